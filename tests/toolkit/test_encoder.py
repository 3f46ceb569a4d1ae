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
