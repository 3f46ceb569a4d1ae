"""SIGReg / LeJEPA: parity with lightly's SIGReg and LeJEPALoss (same random slices), and
the Epps-Pulley statistic written out (Balestriero & LeCun 2025, Sec. 4, eq. for EP)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnipatch.losses import LeJEPALoss, SIGReg

lightly_loss = pytest.importorskip("lightly.loss")


@pytest.mark.parametrize("shape", [(32, 16), (3, 32, 16)])
def test_sigreg_parity_with_lightly(shape):
    z = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(7)  # both draw their slices from the global generator
    ours = SIGReg(num_slices=64)(z)
    torch.manual_seed(7)
    ref = lightly_loss.SIGReg(num_vectors=64)(z)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lam", [0.05, 0.5])
def test_lejepa_parity_with_lightly(lam):
    g = torch.Generator().manual_seed(1)
    glob, loc = torch.randn(2, 16, 8, generator=g), torch.randn(3, 16, 8, generator=g)
    torch.manual_seed(3)
    ours = LeJEPALoss(lam, num_slices=32)(torch.cat([glob, loc]), n_global=2)
    torch.manual_seed(3)
    ref = lightly_loss.LeJEPALoss(lambda_param=lam, sigreg_num_vectors=32)(local_proj=loc, global_proj=glob)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_epps_pulley_written_out():
    """One slice a: x_n = <z_n, a>; EP = N * int_{-3}^{3} |1/N sum_n e^{i t x_n} - e^{-t^2/2}|^2
    e^{-t^2/2} dt, trapezoid on 33 symmetric knots (= 17 on [0, 3], doubled)."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(40, 5)) * 1.5 + 0.3
    g = torch.Generator().manual_seed(5)
    sig = SIGReg(knots=17, t_max=3.0, num_slices=1)
    a = sig.directions(5, torch.device("cpu"), torch.Generator().manual_seed(5)).numpy()[:, 0]
    x = z @ a
    t = np.linspace(-3, 3, 33)
    ecf = np.array([np.mean(np.exp(1j * tk * x)) for tk in t])
    integrand = np.abs(ecf - np.exp(-t**2 / 2)) ** 2 * np.exp(-t**2 / 2)
    expected = len(x) * np.trapezoid(integrand, t)
    ours = sig(torch.tensor(z, dtype=torch.float32), generator=g).item()
    assert ours == pytest.approx(expected, rel=1e-4)


def test_sigreg_small_for_gaussian_large_for_collapse():
    g = torch.Generator().manual_seed(0)
    sig = SIGReg(num_slices=128)
    gauss = sig(torch.randn(512, 16, generator=g), generator=torch.Generator().manual_seed(1))
    collapsed = sig(torch.ones(512, 16) + 1e-3 * torch.randn(512, 16, generator=g),
                    generator=torch.Generator().manual_seed(1))
    assert gauss < 5 and collapsed > 50 * gauss  # O(1) under the null, ~N when collapsed


def test_prediction_term_is_mse_to_global_mean():
    z = torch.randn(4, 8, 3)
    c = LeJEPALoss(0.25, num_slices=8).components(z, n_global=2)
    expected = 0.75 * ((z - z[:2].mean(0)) ** 2).mean()
    torch.testing.assert_close(c["prediction"], expected)
    with pytest.raises(ValueError, match="n_global"):
        LeJEPALoss().components(z, n_global=5)
