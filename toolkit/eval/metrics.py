"""Supervised metrics for fine-tuned heads (numpy only; checked against scikit-learn in tests).

Conventions: ``y`` are integer class indices ``(N,)``, ``scores`` are probabilities
``(N, K)``; multi-label targets are 0/1 ``(N, K)``; dense targets are class maps of any
shape. Undefined values (AUROC when no class has both positives and negatives, Dice when no
foreground class occurs) are ``nan``, never an exception.
"""

from __future__ import annotations

import numpy as np


def accuracy(y, pred) -> float:
    y, pred = np.asarray(y), np.asarray(pred)
    return float((y == pred).mean()) if len(y) else float("nan")


def f1_per_class(y, pred, k: int) -> np.ndarray:
    """F1 of each class ``(k,)`` from single-label predictions (0 where a class has no
    true and no predicted sample, as scikit-learn's ``zero_division=0``)."""
    y, pred = np.asarray(y), np.asarray(pred)
    out = np.zeros(k)
    for c in range(k):
        tp = np.sum((pred == c) & (y == c))
        denom = np.sum(pred == c) + np.sum(y == c)
        out[c] = 2 * tp / denom if denom else 0.0
    return out


def macro_f1(y, pred, k: int | None = None) -> float:
    """Mean F1 over the classes present in ``y`` or ``pred`` (scikit-learn's ``macro``)."""
    y, pred = np.asarray(y), np.asarray(pred)
    labels = np.union1d(y, pred).astype(int)
    f1 = f1_per_class(y, pred, int(max(labels.max() + 1, k or 0)) if len(labels) else (k or 0))
    return float(f1[labels].mean()) if len(labels) else float("nan")


def binary_auroc(pos_scores, neg_scores) -> float:
    """Mann-Whitney AUROC: P(score of a positive > score of a negative), ties count half."""
    pos, neg = np.asarray(pos_scores, dtype=np.float64), np.asarray(neg_scores, dtype=np.float64)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    i = 0
    while i < len(allv):  # average ranks of ties
        j = i
        while j + 1 < len(allv) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def macro_auroc(onehot, scores) -> float:
    """One-vs-rest AUROC averaged over the columns with both positives and negatives.

    Args:
        onehot: ``(N, K)`` 0/1 targets (one-hot for single-label, multi-hot for multi-label).
        scores: ``(N, K)`` scores or probabilities.
    """
    onehot, scores = np.asarray(onehot).astype(bool), np.asarray(scores)
    if scores.shape[1] == 2 and onehot.shape[1] == 2 and (onehot.sum(1) == 1).all():
        return binary_auroc(scores[onehot[:, 1], 1], scores[~onehot[:, 1], 1])  # binary: one curve
    vals = [binary_auroc(scores[onehot[:, c], c], scores[~onehot[:, c], c]) for c in range(onehot.shape[1])]
    vals = [v for v in vals if not np.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


def classification_metrics(y, probs) -> dict[str, float]:
    """Accuracy, macro-F1 and macro one-vs-rest AUROC of single-label predictions."""
    y, probs = np.asarray(y, dtype=int), np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    pred = probs.argmax(1)
    return {"accuracy": accuracy(y, pred), "macro_f1": macro_f1(y, pred, k),
            "auroc": macro_auroc(np.eye(k, dtype=bool)[y], probs)}


def multilabel_metrics(targets, probs, threshold: float = 0.5) -> dict[str, float]:
    """Subset accuracy, macro-F1 over labels (at ``threshold``) and macro AUROC."""
    t, p = np.asarray(targets).astype(bool), np.asarray(probs, dtype=np.float64)
    pred = p >= threshold
    tp, fp, fn = (pred & t).sum(0), (pred & ~t).sum(0), (~pred & t).sum(0)
    denom = 2 * tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return {"subset_accuracy": float((pred == t).all(1).mean()), "macro_f1": float(f1.mean()),
            "auroc": macro_auroc(t, p)}


def regression_metrics(y, pred) -> dict[str, float]:
    """MAE, RMSE and R^2."""
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    err = pred - y
    ss = ((y - y.mean()) ** 2).sum()
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean())),
            "r2": float(1 - (err ** 2).sum() / ss) if ss > 0 else float("nan")}


def dice_scores(target, pred, k: int) -> np.ndarray:
    """Dice ``2|P & G| / (|P| + |G|)`` of each class ``1..k-1`` over all pixels given
    (class 0 is background); ``nan`` for a class absent from both."""
    t, p = np.asarray(target).ravel(), np.asarray(pred).ravel()
    out = np.full(max(k - 1, 0), np.nan)
    for c in range(1, k):
        inter, size = np.sum((t == c) & (p == c)), np.sum(t == c) + np.sum(p == c)
        if size:
            out[c - 1] = 2 * inter / size
    return out


def segmentation_metrics(target, pred, k: int) -> dict[str, float]:
    """Mean foreground Dice and pixel accuracy of class maps."""
    d = dice_scores(target, pred, k)
    return {"dice": float(np.nanmean(d)) if np.isfinite(d).any() else float("nan"),
            "pixel_accuracy": accuracy(np.asarray(target).ravel(), np.asarray(pred).ravel())}


__all__ = ["accuracy", "macro_f1", "macro_auroc", "binary_auroc", "classification_metrics",
           "multilabel_metrics", "regression_metrics", "dice_scores", "segmentation_metrics"]
