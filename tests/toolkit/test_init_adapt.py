"""The adaptation rules of omnipatch.init.adapt, each against its reference (timm) or its
defining property, and how a grid adapter applies them."""

import math
import os

import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from omnipatch.adapters import ImageAdapter, PointCloudAdapter, VideoAdapter  # noqa: E402
from omnipatch.batch import Batch  # noqa: E402
from omnipatch.encoder import EncoderConfig  # noqa: E402
from omnipatch.heads import DecoderConfig  # noqa: E402
from omnipatch.init import SourceWeights, init_model  # noqa: E402
from omnipatch.init.adapt import adapt_patch_embed, from_linear, resample_pos, to_linear  # noqa: E402
from omnipatch.masking import MaskSpec  # noqa: E402
from omnipatch.model import OmniModel  # noqa: E402

timm_layers = pytest.importorskip("timm.layers")
from timm.models._manipulate import adapt_input_conv  # noqa: E402

D = 32


def source(patch=(4, 4), chans=3, grid=(6, 6), cls=True) -> SourceWeights:
    g = torch.Generator().manual_seed(0)
    blocks = {"blocks.0.norm1.weight": torch.ones(D), "blocks.0.norm1.bias": torch.zeros(D),
              "blocks.0.attn.qkv.weight": torch.randn(3 * D, D, generator=g) * 0.1, "blocks.0.attn.qkv.bias": torch.zeros(3 * D),
              "blocks.0.attn.proj.weight": torch.randn(D, D, generator=g) * 0.1, "blocks.0.attn.proj.bias": torch.zeros(D),
              "blocks.0.norm2.weight": torch.ones(D), "blocks.0.norm2.bias": torch.zeros(D),
              "blocks.0.mlp.fc1.weight": torch.randn(4 * D, D, generator=g) * 0.1, "blocks.0.mlp.fc1.bias": torch.zeros(4 * D),
              "blocks.0.mlp.fc2.weight": torch.randn(D, 4 * D, generator=g) * 0.1, "blocks.0.mlp.fc2.bias": torch.zeros(D),
              "norm.weight": torch.ones(D), "norm.bias": torch.zeros(D)}
    state = {**blocks, "patch_embed.proj.weight": torch.randn(D, chans, *patch, generator=g),
             "patch_embed.proj.bias": torch.randn(D, generator=g), "pos_embed": torch.randn(1, math.prod(grid), D, generator=g)}
    if cls:
        state["cls_token"] = torch.randn(1, 1, D, generator=g)
    return SourceWeights("test source", state, dict(dim=D, depth=1, num_heads=4, class_token=cls), None, grid)


def scratch(adapter):
    m = adapter.modality
    return OmniModel({m: adapter}, EncoderConfig(16, 1, 2), DecoderConfig(), {"mae": {}}, {m: MaskSpec()})


def test_patch_resample_is_timm_resample_patch_embed():
    w = torch.randn(D, 3, 16, 16)
    out, notes = adapt_patch_embed(w, 3, (8, 8))
    torch.testing.assert_close(out, timm_layers.resample_patch_embed(w, [8, 8]), atol=1e-5, rtol=1e-5)
    assert notes == ["patch (16, 16) -> (8, 8) (FlexiViT resample)"]
    # FlexiViT's property: a patch resized the same way embeds the same (upsampling the kernel)
    x = torch.randn(5, 3, 4, 4)
    up, _ = adapt_patch_embed(w[:, :, :4, :4].contiguous(), 3, (8, 8))
    x_up = F.interpolate(x, size=(8, 8), mode="bicubic", align_corners=False, antialias=True)  # timm's resize
    torch.testing.assert_close(F.conv2d(x_up, up, stride=8), F.conv2d(x, w[:, :, :4, :4], stride=4), atol=1e-4, rtol=1e-4)


def test_inflation_2d_to_3d_embeds_a_still_clip_like_its_frame():
    w = torch.randn(D, 3, 4, 4)
    w3, notes = adapt_patch_embed(w, 3, (2, 4, 4))
    assert w3.shape == (D, 3, 2, 4, 4) and "inflated" in notes[0]
    frame = torch.randn(2, 3, 8, 8)
    clip = frame.unsqueeze(2).repeat(1, 1, 4, 1, 1)  # 4 identical frames
    y3 = F.conv3d(clip, w3, stride=(2, 4, 4))
    y2 = F.conv2d(frame, w, stride=4)
    torch.testing.assert_close(y3, y2.unsqueeze(2).expand_as(y3), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("c_new", [1, 5, 13])
def test_channels_follow_timm_adapt_input_conv_for_rgb(c_new):
    w = torch.randn(D, 3, 4, 4)
    out, _ = adapt_patch_embed(w, c_new, (4, 4))
    torch.testing.assert_close(out, adapt_input_conv(c_new, w.clone()), atol=1e-6, rtol=1e-6)


def test_position_resample_is_timm_resample_abs_pos_embed():
    table = torch.randn(1, 14 * 14, D)
    ours = resample_pos(table, (14, 14), (8, 10))
    ref = timm_layers.resample_abs_pos_embed(table, [8, 10], [14, 14], num_prefix_tokens=0)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    assert resample_pos(table, (14, 14), (14, 14)) is table


def test_linear_layout_round_trip_matches_patchify():
    a = ImageAdapter(3, 4, D)
    w = torch.randn(D, 3, 4, 4)
    a.proj.weight.data.copy_(to_linear(w))
    a.proj.bias.data.zero_()
    x = torch.randn(2, 3, 8, 12)
    torch.testing.assert_close(a.proj(a.patchify(x)), F.conv2d(x, w, stride=4).flatten(2).transpose(1, 2),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(from_linear(to_linear(w), 3, (4, 4)), w)


def test_grid_adapter_gets_patch_channels_positions_and_class_token():
    src = source(patch=(4, 4), chans=3, grid=(6, 6))
    model, report = init_model(scratch(ImageAdapter(1, 2, 16)), src)
    a = model.adapters["image"]
    assert a.pos_grid == (6, 6) and a.config()["pos_grid"] == [6, 6]
    torch.testing.assert_close(a.pos_table, src.state["pos_embed"])
    expect, _ = adapt_patch_embed(src.state["patch_embed.proj.weight"], 1, (2, 2))
    torch.testing.assert_close(a.proj.weight, to_linear(expect))
    assert "adapters.image.proj.weight" in report.names("resampled")
    torch.testing.assert_close(model.encoder.cls_token, src.state["cls_token"])
    # the learned table is resampled to whatever grid the data has
    t = a.tokenize(Batch(x=torch.randn(2, 1, 8, 12)))
    torch.testing.assert_close(t.pos, resample_pos(a.pos_table, (6, 6), (4, 6)))
    assert model.encoder(t.tokens).shape == (2, 24, D)  # the class token is not in the output


def test_sincos_by_choice_and_for_grids_of_other_rank():
    model, report = init_model(scratch(ImageAdapter(3, 4, 16)), source(), pos="sincos")
    assert model.adapters["image"].pos_grid is None and "pos_embed" in report.names("ignored")
    video, report = init_model(scratch(VideoAdapter(3, [2, 4, 4], 16)), source())  # 2-D table, 3-D grid
    assert video.adapters["video"].pos_grid is None and "pos_embed" in report.names("ignored")
    with pytest.raises(Exception, match="no 3-d position table"):
        init_model(scratch(VideoAdapter(3, [2, 4, 4], 16)), source(), pos="learned")


def test_modalities_without_patch_embedding_transfer_the_trunk_only():
    src = source()
    model, report = init_model(scratch(PointCloudAdapter(dim=16, num_groups=8, group_size=4)), src)
    adapter_rows = [r for r in report.rows if r["name"].startswith("adapters.")]
    assert adapter_rows and all(r["status"] == "new" and "trunk alone" in r["detail"] for r in adapter_rows)
    for k in ("blocks.0.attn.qkv.weight", "norm.weight"):
        torch.testing.assert_close(model.encoder.state_dict()[k], src.state[k])
    assert {"patch_embed.proj.weight", "pos_embed"} <= set(report.names("ignored"))
