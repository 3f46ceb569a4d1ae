"""Properties every loss in omnipatch.losses must have: finite gradients, invariance to the
order of the batch (and of the views where the loss is symmetric), clear errors on bad shapes
and on a batch of one. Parity with reference code is in the per-loss test files."""

from __future__ import annotations

import pytest
import torch

from omnipatch.losses import (
    BarlowTwinsLoss,
    CLIPLoss,
    LeJEPALoss,
    LossInputError,
    MVDHELLoss,
    MVInfoNCELoss,
    NTXentLoss,
    SIGReg,
    SupConLoss,
    VICRegLoss,
)

B, D = 12, 16


def _seeded(loss):
    """Losses that draw random slices get the same draw on every call."""
    if isinstance(loss, (SIGReg, LeJEPALoss)):
        return lambda *z: loss(*z, generator=torch.Generator().manual_seed(0))
    return loss


# name -> (loss factory, "pair" (two (B, D) tensors) or "views" ((V, B, D) tensor))
LOSSES = {
    "ntxent": (lambda: NTXentLoss(0.3), "pair"),
    "clip": (lambda: CLIPLoss(), "pair"),
    "barlow": (lambda: BarlowTwinsLoss(), "pair"),
    "vicreg": (lambda: VICRegLoss(), "pair"),
    "sigreg": (lambda: SIGReg(num_slices=32), "views"),
    "lejepa": (lambda: LeJEPALoss(num_slices=32), "views"),
    "mv_infonce": (lambda: MVInfoNCELoss(), "views"),
    "mv_dhel": (lambda: MVDHELLoss(), "views"),
    "supcon": (lambda: SupConLoss(), "views"),
}


def _inputs(kind: str, seed: int = 0, b: int = B, v: int = 3):
    g = torch.Generator().manual_seed(seed)
    if kind == "pair":
        return [torch.randn(b, D, generator=g, requires_grad=True) for _ in range(2)]
    return [torch.randn(v, b, D, generator=g, requires_grad=True)]


@pytest.mark.parametrize("name", LOSSES)
def test_finite_value_and_gradients(name):
    make, kind = LOSSES[name]
    zs = _inputs(kind)
    loss = _seeded(make())(*zs)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    for z in zs:
        assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


@pytest.mark.parametrize("name", LOSSES)
def test_batch_permutation_invariance(name):
    make, kind = LOSSES[name]
    fn = _seeded(make())
    zs = [z.detach() for z in _inputs(kind)]
    perm = torch.randperm(B, generator=torch.Generator().manual_seed(1))
    permuted = [z[perm] for z in zs] if kind == "pair" else [zs[0][:, perm]]
    torch.testing.assert_close(fn(*permuted), fn(*zs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", LOSSES)
def test_view_order_symmetry(name):
    """Swapping the two views (pair losses) or permuting the views (multi-view) changes nothing."""
    make, kind = LOSSES[name]
    fn = _seeded(make())
    zs = [z.detach() for z in _inputs(kind)]
    swapped = zs[::-1] if kind == "pair" else [zs[0][[2, 0, 1]]]
    torch.testing.assert_close(fn(*swapped), fn(*zs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", LOSSES)
def test_batch_of_one_is_a_clear_error(name):
    make, kind = LOSSES[name]
    with pytest.raises(LossInputError, match="batch of at least 2"):
        make()(*_inputs(kind, b=1))


@pytest.mark.parametrize("name", LOSSES)
def test_bad_shapes_are_clear_errors(name):
    make, kind = LOSSES[name]
    if kind == "pair":
        bad = [(torch.randn(B, D), torch.randn(B, D + 1)), (torch.randn(B, D, 2), torch.randn(B, D, 2))]
        msg = r"\(B, D\)"
    else:
        bad = [(torch.randn(D),)] if name == "sigreg" else [(torch.randn(B, D),), (torch.randn(2, 3, B, D),)]
        msg = r"\(V, B, D\)|\(\.\.\., N, D\)"
    for args in bad:
        with pytest.raises(LossInputError, match=msg):
            make()(*args)


@pytest.mark.parametrize("name", ["mv_infonce", "mv_dhel"])
def test_multiview_losses_need_two_views(name):
    with pytest.raises(LossInputError, match="at least 2 views"):
        LOSSES[name][0]()(torch.randn(1, B, D))


def test_loss_errors_are_value_errors_too():
    """Callers that catch ValueError (as for the first NTXentLoss) keep working."""
    with pytest.raises(ValueError):
        NTXentLoss()(torch.randn(1, D), torch.randn(1, D))


@pytest.mark.parametrize("bad", [lambda: NTXentLoss(0.0), lambda: CLIPLoss(0.0), lambda: BarlowTwinsLoss(-1.0),
                                 lambda: SIGReg(knots=1), lambda: LeJEPALoss(1.5), lambda: MVInfoNCELoss(-0.1),
                                 lambda: MVDHELLoss(0.0), lambda: SupConLoss(0.0)])
def test_bad_hyperparameters_rejected(bad):
    with pytest.raises(LossInputError):
        bad()


def test_losses_accept_bf16_and_return_float32():
    z1, z2 = torch.randn(B, D).bfloat16(), torch.randn(B, D).bfloat16()
    for loss in (NTXentLoss(), CLIPLoss(), BarlowTwinsLoss(), VICRegLoss()):
        assert loss(z1, z2).dtype == torch.float32
    zv = torch.randn(3, B, D).bfloat16()
    for loss in (MVInfoNCELoss(), MVDHELLoss(), SupConLoss(), SIGReg(num_slices=8), LeJEPALoss(num_slices=8)):
        assert loss(zv).dtype == torch.float32
