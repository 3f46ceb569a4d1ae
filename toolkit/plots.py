"""Pictures for humans: reconstructions (original / masked / reconstructed), embedding maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _to_image(x: Tensor) -> np.ndarray:
    """``(C, *S)`` -> 2-D (or RGB) array: first 3 channels, middle slice of extra spatial axes."""
    while x.dim() > 3:
        x = x[:, x.shape[1] // 2]
    x = x.float().clamp(0, 1)
    return (x[:3].permute(1, 2, 0) if x.shape[0] >= 3 else x[0]).cpu().numpy()


def save_reconstruction(pictures: dict[str, Tensor], out: str | Path, n: int = 8) -> Path:
    """Rows: original / masked / reconstruction; columns: the first ``n`` samples.

    Each sample is min-max scaled with the range of its original, so the three rows are
    comparable.
    """
    plt = _plt()
    rows = list(pictures)
    n = min(n, pictures[rows[0]].shape[0])
    fig, axes = plt.subplots(len(rows), n, figsize=(1.4 * n, 1.4 * len(rows)), squeeze=False)
    for j in range(n):
        orig = pictures[rows[0]][j]
        lo, hi = orig.min(), orig.max()
        for i, r in enumerate(rows):
            x = ((pictures[r][j] - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
            axes[i, j].imshow(_to_image(x), cmap="gray", vmin=0, vmax=1)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if j == 0:
                axes[i, j].set_ylabel(r, fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)


def save_embedding_map(emb: np.ndarray, labels: np.ndarray | None, out: str | Path, title: str = "") -> Path:
    """2-D PCA of embeddings, coloured by label."""
    from sklearn.decomposition import PCA

    plt = _plt()
    xy = PCA(n_components=2, random_state=0).fit_transform(np.asarray(emb, dtype=np.float64))
    fig, ax = plt.subplots(figsize=(5, 4.5))
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=4)
    else:
        labels = np.asarray(labels)
        for lab in np.unique(labels):
            sel = labels == lab
            ax.scatter(xy[sel, 0], xy[sel, 1], s=4, label=str(lab))
        if len(np.unique(labels)) <= 20:
            ax.legend(markerscale=3, fontsize=7, loc="best")
    ax.set_title(title or "embeddings (PCA)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)
