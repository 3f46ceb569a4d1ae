from omnipatch.heads.mae_decoder import DecoderConfig, MAEDecoder
from omnipatch.heads.projection import ProjectionHead

__all__ = ["DecoderConfig", "MAEDecoder", "ProjectionHead"]
