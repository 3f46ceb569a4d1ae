"""omnipatch.init: timm and Hugging Face checkpoints load into the timm-speaking encoder with
forward parity, and ViTMAE's masked-autoencoder step is reproduced exactly (same noise)."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from omnipatch.adapters import ImageAdapter, VideoAdapter  # noqa: E402
from omnipatch.batch import Batch  # noqa: E402
from omnipatch.encoder import EncoderConfig  # noqa: E402
from omnipatch.errors import OmnipatchError  # noqa: E402
from omnipatch.heads import DecoderConfig  # noqa: E402
from omnipatch.init import init_model  # noqa: E402
from omnipatch.masking import MaskSpec  # noqa: E402
from omnipatch.model import OmniModel  # noqa: E402


def scratch(adapter, mask=0.75):
    """What a run would train from scratch (its encoder is replaced by the checkpoint's)."""
    m = adapter.modality
    return OmniModel({m: adapter}, EncoderConfig(64, 1, 4), DecoderConfig(), {"mae": {}}, {m: MaskSpec("random", mask)})


def tokens_through(model, modality, x):
    t = model.adapters[modality].tokenize(Batch(x=x))
    return model.encoder_for(modality).forward_features(t.tokens, t.padding_mask, keep_prefix=True)


def _randomise(module):  # away from the init so parity is not trivially met by zeros / ones
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def test_timm_vit_tiny_loads_with_zero_missing_trunk_keys_and_forward_parity(tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    tm = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    _randomise(tm)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in tm.state_dict().items()}, str(path))
    model, report = init_model(scratch(ImageAdapter(3, 16, 64)), f"timm:vit_tiny_patch16_224={path}", strict=True)
    trunk_new = [n for n in report.names("new") if n.startswith("encoder.")]
    assert trunk_new == []
    assert model.encoder.cfg.dim == 192 and len(model.encoder.blocks) == 12
    assert set(report.names("ignored")) == {"head.weight", "head.bias"}
    # no key mapping for the trunk: timm's own names load straight into the encoder
    trunk = {k: v for k, v in tm.state_dict().items() if k.startswith(("blocks.", "norm.")) or k == "cls_token"}
    missing, unexpected = model.encoder.load_state_dict({**trunk, "cls_token": model.encoder.cls_token}, strict=False)
    assert missing == [] and unexpected == []
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(tokens_through(model.eval(), "image", x), tm.forward_features(x), atol=1e-5, rtol=0)


def _hf_tiny(kind, channels=3):
    tr = pytest.importorskip("transformers")
    common = dict(image_size=30, patch_size=2, num_channels=channels, hidden_size=32, num_hidden_layers=2,
                  num_attention_heads=4, intermediate_size=37)
    torch.manual_seed(0)
    if kind == "dinov2":
        return tr.Dinov2Model(tr.Dinov2Config(**common, layerscale_value=0.3))
    if kind == "vit":
        return tr.ViTModel(tr.ViTConfig(**common))
    return tr.ViTMAEForPreTraining(tr.ViTMAEConfig(**common, decoder_hidden_size=32, decoder_num_hidden_layers=2,
                                                   decoder_num_attention_heads=4, decoder_intermediate_size=37,
                                                   mask_ratio=0.5, attn_implementation="eager"))


@pytest.mark.parametrize("kind", ["dinov2", "vit"])
def test_hf_encoder_forward_parity(tmp_path, kind):
    hf = _hf_tiny(kind).eval()
    _randomise(hf)
    hf.save_pretrained(tmp_path / kind)
    model, report = init_model(scratch(ImageAdapter(3, 2, 64)), str(tmp_path / kind), strict=True)
    assert not [n for n in report.names("new") if n.startswith("encoder.")]
    if kind == "dinov2":
        assert model.encoder.cfg.init_values is not None  # layer scale loaded as ls1/ls2.gamma
        assert "encoder.blocks.0.ls1.gamma" in report.names("loaded")
    x = torch.randn(2, 3, 30, 30)
    with torch.no_grad():
        torch.testing.assert_close(tokens_through(model.eval(), "image", x), hf(pixel_values=x).last_hidden_state,
                                   atol=1e-5, rtol=0)


@pytest.mark.parametrize("channels", [3, 1])
def test_vitmae_parity_mask_reconstruction_and_loss(tmp_path, channels):
    """HF's tester-size ViTMAEForPreTraining through ``--init``: with the same noise omnipatch's
    mask, decoder output and loss equal Hugging Face's."""
    hf = _hf_tiny("vit_mae", channels).eval()
    hf.save_pretrained(tmp_path / "mae")
    model, report = init_model(scratch(ImageAdapter(channels, 2, 64), mask=0.5), str(tmp_path / "mae"), strict=True)
    assert report.names("ignored") == []
    assert "decoder.mask_token" in report.names("loaded") and "pred.image.weight" in report.names("loaded")
    model.eval()
    x = torch.randn(3, channels, 30, 30)
    noise = torch.rand(3, 225, generator=torch.Generator().manual_seed(1))  # what our random mask draws
    with torch.no_grad():
        ref = hf(pixel_values=x, noise=noise)
        view = model.encode_view(Batch(x=x), "image", torch.Generator().manual_seed(1))
        pred = model.decode(view)
        loss = model([Batch(x=x)], "image", torch.Generator().manual_seed(1))["loss"]
    torch.testing.assert_close(view.mask.loss_mask, ref.mask, atol=0, rtol=0)
    torch.testing.assert_close(pred, ref.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(loss, ref.loss, atol=1e-5, rtol=0)


def test_videomae_encoder_and_decoder_load(tmp_path):
    tr = pytest.importorskip("transformers")
    cfg = tr.VideoMAEConfig(image_size=16, patch_size=4, num_channels=3, num_frames=4, tubelet_size=2, hidden_size=32,
                            num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, decoder_hidden_size=32,
                            decoder_num_hidden_layers=1, decoder_num_attention_heads=4, decoder_intermediate_size=37,
                            use_mean_pooling=False)
    torch.manual_seed(0)
    hf = tr.VideoMAEForPreTraining(cfg).eval()
    hf.save_pretrained(tmp_path / "vmae")
    model, report = init_model(scratch(VideoAdapter(3, [2, 4, 4], 64)), str(tmp_path / "vmae"), strict=True)
    assert "decoder.blocks.0.attn.qkv.weight" in report.names("loaded")
    x = torch.randn(2, 4, 3, 16, 16)  # HF layout (B, T, C, H, W); ours (B, C, T, H, W)
    with torch.no_grad():
        torch.testing.assert_close(tokens_through(model.eval(), "video", x.transpose(1, 2)),
                                   hf.videomae(pixel_values=x).last_hidden_state, atol=1e-5, rtol=0)


@pytest.mark.parametrize("bias", [{}, {"qv_bias": False}])
def test_videomae_default_config_loads_strict(tmp_path, bias):
    """VideoMAE's defaults (``use_mean_pooling``: no final LayerNorm; ``qv_bias``) at a tiny
    size: every trunk tensor is found (``--init-strict``) and the encoder output is HF's."""
    tr = pytest.importorskip("transformers")
    cfg = tr.VideoMAEConfig(image_size=16, patch_size=4, num_frames=4, hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=4, intermediate_size=37, decoder_hidden_size=32,
                            decoder_num_hidden_layers=1, decoder_num_attention_heads=4, decoder_intermediate_size=37,
                            **bias)
    torch.manual_seed(0)
    hf = tr.VideoMAEForPreTraining(cfg).eval()
    _randomise(hf)
    hf.save_pretrained(tmp_path / "vmae")
    model, report = init_model(scratch(VideoAdapter(3, [2, 4, 4], 64)), str(tmp_path / "vmae"), strict=True)
    assert report.names("new") == [n for n in report.names("new") if not n.startswith("encoder.")]
    assert not any(k.startswith("encoder.norm.") for k in model.state_dict())  # the blocks' output, as HF's
    assert ("encoder.blocks.0.attn.qkv.bias" in report.names("loaded")) == bias.get("qv_bias", True)
    x = torch.randn(2, 4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(tokens_through(model.eval(), "video", x.transpose(1, 2)),
                                   hf.videomae(pixel_values=x).last_hidden_state, atol=1e-5, rtol=0)


def test_missing_weights_file_is_one_line_naming_path_and_how_to_get_it(tmp_path):
    pytest.importorskip("timm")
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(OmnipatchError, match=r"nope\.safetensors: weights file not found .*hf download timm/vit_tiny"):
        init_model(scratch(ImageAdapter(3, 16, 64)), f"timm:vit_tiny_patch16_224={missing}")
    with pytest.raises(OmnipatchError, match="init source not found"):
        init_model(scratch(ImageAdapter(3, 16, 64)), str(tmp_path / "no_such_run"))
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text('{"model_type": "vit", "hidden_size": 8}')
    with pytest.raises(OmnipatchError, match=r"hf: no weights \(model.safetensors"):
        init_model(scratch(ImageAdapter(3, 16, 64)), str(tmp_path / "hf"))


def test_init_strict_fails_when_trunk_tensors_are_missing(tmp_path):
    hf = _hf_tiny("vit")
    hf.save_pretrained(tmp_path / "vit")
    from safetensors.torch import load_file, save_file

    sd = load_file(str(tmp_path / "vit" / "model.safetensors"))
    save_file({k: v for k, v in sd.items() if not k.startswith("layernorm.")}, str(tmp_path / "vit" / "model.safetensors"))
    with pytest.raises(OmnipatchError, match="trunk tensors missing from the checkpoint: norm.bias, norm.weight"):
        init_model(scratch(ImageAdapter(3, 2, 64)), str(tmp_path / "vit"), strict=True)
    _, report = init_model(scratch(ImageAdapter(3, 2, 64)), str(tmp_path / "vit"))
    assert {"encoder.norm.weight", "encoder.norm.bias"} <= set(report.names("new"))
