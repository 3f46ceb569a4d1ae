import torch

from omnipatch.encoder import PRESETS, Encoder, EncoderConfig, pool


def test_padding_does_not_change_valid_outputs():
    torch.manual_seed(0)
    enc = Encoder(EncoderConfig(32, 2, 4)).eval()
    x = torch.randn(2, 6, 32)
    pad = torch.tensor([[False] * 4 + [True] * 2, [False] * 6])
    y = enc(x, pad)
    x2 = x.clone()
    x2[0, 4:] = 1000.0  # garbage in padded slots must not leak into valid tokens
    y2 = enc(x2, pad)
    torch.testing.assert_close(y[0, :4], y2[0, :4])
    torch.testing.assert_close(y[1], y2[1])
    assert torch.isfinite(enc(x, torch.ones(2, 6, dtype=torch.bool))).all()


def test_presets_and_surface():
    assert PRESETS.get("base").dim == 768 and PRESETS.get("tiny").depth == 12
    enc = Encoder(EncoderConfig(16, 3, 2))
    out, inter = enc.forward_intermediates(torch.randn(1, 5, 16), indices=[0, 2])
    assert out.shape == (1, 5, 16) and len(inter) == 2
    assert all(n.endswith(("bias", "weight")) for n in enc.no_weight_decay())
    enc.set_grad_checkpointing(True)
    enc(torch.randn(1, 5, 16, requires_grad=True)).sum().backward()


def test_pool_ignores_padding():
    x = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert pool(x, torch.tensor([[True, True, False]])).item() == 2.0


def test_explicit_attention_matches_sdpa_with_padding():
    from omnipatch.layers.attention import Attention

    torch.manual_seed(0)
    x = torch.randn(3, 7, 32, requires_grad=True)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[1, 4:] = True
    pad[2] = True  # a fully padded row must stay finite on both paths
    outs, grads = {}, {}
    for impl in ("sdpa", "explicit"):
        torch.manual_seed(1)  # same weights for both paths
        att = Attention(32, 4)
        att.impl = impl
        y = att(x, pad)
        (y[~pad].square().sum()).backward()
        outs[impl], grads[impl] = y.detach(), x.grad.clone()
        x.grad = None
    assert torch.isfinite(outs["explicit"]).all()
    torch.testing.assert_close(outs["explicit"][~pad], outs["sdpa"][~pad], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads["explicit"], grads["sdpa"], rtol=1e-4, atol=1e-5)


def test_region_pool_matches_block_means_and_is_flip_invariant():
    import pytest

    from omnipatch.encoder import region_pool
    from omnipatch.errors import OmnipatchError

    torch.manual_seed(0)
    x = torch.randn(2, 3 * 4 * 4, 5)  # tokens on a (3, 4, 4) grid, row-major
    z = region_pool(x, (3, 4, 4), (2, 2), mean_axes=(0,))
    assert z.shape == (2, 4 * 5)
    g = x.reshape(2, 3, 4, 4, 5).mean(1)  # (2, 4, 4, 5) after the averaged axis
    want = torch.stack([g[:, i:i + 2, j:j + 2].mean((1, 2)) for i in (0, 2) for j in (0, 2)], 1)
    torch.testing.assert_close(z, want.reshape(2, -1))
    flipped = x.reshape(2, 3, 4, 4, 5).flip(1).reshape(2, -1, 5)  # mirror the averaged axis
    torch.testing.assert_close(region_pool(flipped, (3, 4, 4), (2, 2), mean_axes=(0,)), z)
    assert not torch.allclose(region_pool(x.reshape(2, 3, 4, 4, 5).flip(2).reshape(2, -1, 5), (3, 4, 4), (2, 2),
                                          mean_axes=(0,)), z)  # a kept axis keeps its layout
    # padded tokens weigh nothing: garbage in them changes nothing
    valid = torch.ones(2, 48, dtype=torch.bool)
    valid[0, :4] = False
    x2 = x.clone()
    x2[0, :4] = 1e4
    torch.testing.assert_close(region_pool(x, (3, 4, 4), (2, 2), (0,), valid),
                               region_pool(x2, (3, 4, 4), (2, 2), (0,), valid))
    # one region over every axis is the plain mean
    torch.testing.assert_close(region_pool(x, (3, 4, 4), (1, 1, 1)), pool(x))
    with pytest.raises(OmnipatchError, match="regular token grid"):
        region_pool(x, (3, 4, 3), (2, 2), (0,))
    with pytest.raises(OmnipatchError, match="2 region counts for 3 kept axes"):
        region_pool(x, (3, 4, 4), (2, 2))
