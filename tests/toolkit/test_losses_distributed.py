"""Global-batch helpers without a process group: the identity, at no cost."""

from __future__ import annotations

import torch

from omnipatch.losses import distributed as d


def test_single_process_is_identity():
    assert not d.is_distributed() and d.world_size() == 1 and d.rank() == 0
    x = torch.randn(4, 3, requires_grad=True)
    assert d.gather(x) is x and d.gather(x, dim=1) is x
    y = torch.randn(5)
    assert d.broadcast_(y) is y


def test_losses_unchanged_by_gather_flag_in_one_process():
    from omnipatch.losses import BarlowTwinsLoss, MVDHELLoss, NTXentLoss, VICRegLoss

    z1, z2 = torch.randn(8, 6), torch.randn(8, 6)
    for cls in (NTXentLoss, BarlowTwinsLoss, VICRegLoss):
        torch.testing.assert_close(cls(gather_distributed=True)(z1, z2), cls(gather_distributed=False)(z1, z2))
    z = torch.randn(3, 8, 6)
    torch.testing.assert_close(MVDHELLoss(gather_distributed=True)(z), MVDHELLoss(gather_distributed=False)(z))
