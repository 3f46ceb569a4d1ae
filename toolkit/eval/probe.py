"""Frozen-feature evaluation: kNN and linear probes (scikit-learn).

kNN follows the DINO / InstDisc protocol: cosine similarity on L2-normalised features,
``k`` neighbours voting with weight ``exp(sim / T)``. The linear probe is multinomial
logistic regression on standardised features, its L2 strength picked by cross-validation
on the training split only.
"""

from __future__ import annotations

import numpy as np


def _norm(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_predict(train_x, train_y, test_x, k: int = 20, temperature: float = 0.07) -> np.ndarray:
    """Weighted-vote kNN predictions for ``test_x`` ``(M, D)``."""
    train_y = np.asarray(train_y)
    classes, y_idx = np.unique(train_y, return_inverse=True)
    sim = _norm(test_x) @ _norm(train_x).T  # (M, N)
    k = min(k, sim.shape[1])
    nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    w = np.exp(np.take_along_axis(sim, nn, 1) / temperature)
    votes = np.zeros((sim.shape[0], len(classes)))
    np.add.at(votes, (np.arange(sim.shape[0])[:, None].repeat(k, 1), y_idx[nn]), w)
    return classes[votes.argmax(1)]


def knn_accuracy(train_x, train_y, test_x, test_y, k: int = 20) -> float:
    return float((knn_predict(train_x, train_y, test_x, k) == np.asarray(test_y)).mean())


def linear_accuracy(train_x, train_y, test_x, test_y, Cs=(0.01, 0.1, 1.0, 10.0)) -> float:
    """Logistic regression; ``C`` chosen by 3-fold CV on the training split only."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = np.asarray(train_x, dtype=np.float64), np.asarray(train_y)
    make = lambda c: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))  # noqa: E731
    folds = min(3, int(np.unique(y, return_counts=True)[1].min()))
    best = max(Cs, key=lambda c: cross_val_score(make(c), x, y, cv=folds).mean()) if folds >= 2 else 1.0
    clf = make(best).fit(x, y)
    return float(clf.score(np.asarray(test_x, dtype=np.float64), np.asarray(test_y)))


def cross_val_accuracy(x, y, method: str, folds: int = 5, seed: int = 0) -> float:
    """Mean held-out accuracy over stratified folds (when no test split is given)."""
    from sklearn.model_selection import StratifiedKFold

    from omnipatch.errors import OmnipatchError

    x, y = np.asarray(x), np.asarray(y)
    smallest = int(np.unique(y, return_counts=True)[1].min())
    if smallest < 2:
        raise OmnipatchError("cross-validation needs at least 2 samples of every label; "
                             "give --test-embeddings or more labelled samples")
    folds = min(folds, smallest)
    accs = []
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        f = knn_accuracy if method == "knn" else linear_accuracy
        accs.append(f(x[tr], y[tr], x[te], y[te]))
    return float(np.mean(accs))
