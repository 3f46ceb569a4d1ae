"""The "did pretraining help?" report's pieces: raw-feature pooling and imputation, verdicts."""

import numpy as np
import torch

from omnipatch.batch import Sample
from omnipatch.eval.report import MAX_RAW_DIM, _verdict, raw_features


class _Spec:
    raw_features = None


def test_raw_features_flatten_impute_and_pool():
    a = torch.tensor([[1.0, float("nan")], [3.0, 4.0]])
    b = torch.tensor([[3.0, 2.0], [5.0, 6.0]])
    x = raw_features(_Spec(), [Sample(x=a, id="a"), Sample(x=b, id="b")])
    np.testing.assert_allclose(x, [[1, 2, 3, 4], [3, 2, 5, 6]])  # NaN -> the column mean (2)
    big = [Sample(x=torch.arange(5000.0) + i, id=str(i)) for i in range(2)]
    pooled = raw_features(_Spec(), big)
    assert pooled.shape == (2, MAX_RAW_DIM)
    np.testing.assert_allclose(pooled[1] - pooled[0], 1.0)  # average pooling keeps the offset
    assert pooled[0, 0] == 0.5  # the first bin holds elements 0 and 1 (5000 / 2048 per bin)


def test_verdicts():
    def v(p, r, w):
        return _verdict({"linear": p}, {"linear": r}, {"linear": w})

    assert v(0.90, 0.80, 0.85).startswith("Yes")
    assert v(0.90, 0.88, 0.85).startswith("Slightly")
    assert v(0.84, 0.80, 0.85).startswith("Partly")
    assert v(0.79, 0.80, 0.85).startswith("No")
    assert v(0.991, 0.991, 0.99).startswith("Cannot tell")
