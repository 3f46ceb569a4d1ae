"""Small layers: attention, block, sin-cos positional embeddings."""

from omnipatch.layers.attention import Attention
from omnipatch.layers.block import Block, Mlp
from omnipatch.layers.pos_embed import sincos_coords, sincos_nd

__all__ = ["Attention", "Block", "Mlp", "sincos_nd", "sincos_coords"]
