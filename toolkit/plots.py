"""Pictures for humans: reconstructions (original / masked / reconstructed), embedding maps,
retrieval results (query + top-k thumbnails), loss curves.

The one place matplotlib is set up (:func:`pyplot`, :func:`finish`); adapters and examples
draw through these two as well."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor


def pyplot():
    """matplotlib.pyplot on the Agg backend, imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def finish(fig, out: str | Path, title: str = "", tight: bool = True, dpi: int = 100) -> Path:
    """Title, tight layout (off for figures with colour bars placed by hand), save, close:
    the end of every picture."""
    if title:
        fig.suptitle(title, fontsize=9)
    if tight:
        fig.tight_layout()
    fig.savefig(out, dpi=dpi)
    pyplot().close(fig)
    return Path(out)


def _to_picture(x: Tensor) -> np.ndarray:
    """``(C, *S)`` -> 2-D (or RGB) array: first 3 channels, middle slice of extra spatial axes;
    a 1-D layout ``(C, T)`` is shown as C rows."""
    x = x.float()
    while x.dim() > 3:
        x = x[:, x.shape[1] // 2]
    if x.dim() == 2:  # (C, T): one row per channel (1-D layouts)
        return x.cpu().numpy()
    return (x[:3].permute(1, 2, 0) if x.shape[0] >= 3 else x[0]).cpu().numpy()


def save_reconstruction(pictures: dict[str, Tensor], out: str | Path, n: int = 8) -> Path:
    """Rows: original / masked / reconstruction; columns: the first ``n`` samples.

    Each sample is min-max scaled with the range of its original, so the three rows are
    comparable.
    """
    plt = pyplot()
    rows = list(pictures)
    n = min(n, pictures[rows[0]].shape[0])
    fig, axes = plt.subplots(len(rows), n, figsize=(1.4 * n, 1.4 * len(rows)), squeeze=False)
    for j in range(n):
        orig = pictures[rows[0]][j]
        lo, hi = orig.min(), orig.max()
        for i, r in enumerate(rows):
            x = ((pictures[r][j] - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
            axes[i, j].imshow(_to_picture(x), cmap="gray", vmin=0, vmax=1)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if j == 0:
                axes[i, j].set_ylabel(r, fontsize=8)
    return finish(fig, out)


def save_loss_curve(records: list[dict], out: str | Path) -> Path:
    """One panel per logged loss term (``metrics.jsonl`` records) against the step."""
    plt = pyplot()
    keys = [k for k in records[0] if k not in ("step", "lr", "samples_per_s", "grad_norm") and not k.startswith("health/")]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    steps = [r["step"] for r in records]
    for ax, k in zip(axes[0], keys):
        ax.plot(steps, [r.get(k, float("nan")) for r in records])
        ax.set_title(k)
        ax.set_xlabel("step")
    return finish(fig, out)


def save_embedding_map(emb: np.ndarray, labels: np.ndarray | None, out: str | Path, title: str = "") -> Path:
    """2-D PCA of embeddings, coloured by label."""
    from sklearn.decomposition import PCA

    plt = pyplot()
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
    return finish(fig, out)


def thumbnail(sample, spec=None) -> np.ndarray:
    """A picture of one sample: the modality's own ``spec.thumbnail`` or, by default, the
    first (up to 3) channels of ``x (C, *S)`` with the middle slice of any further axes."""
    if spec is not None and spec.thumbnail is not None:
        return np.asarray(spec.thumbnail(sample), dtype=np.float32)
    x = sample.x.float()
    if x.dim() < 3:  # a vector as one row, a matrix as it is
        return x.reshape(1, -1).cpu().numpy() if x.dim() == 1 else x.cpu().numpy()
    return _to_picture(x)


def _scaled(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros_like(a)
    lo, hi = float(a[finite].min()), float(a[finite].max())
    return np.where(finite, (a - lo) / max(hi - lo, 1e-8), np.nan)


def save_retrieval(rows: list[tuple[np.ndarray, str, list[tuple[np.ndarray, str, bool | None]]]],
                   out: str | Path, title: str = "") -> Path:
    """One row per query: its thumbnail, then its top-k results.

    ``rows``: ``(query picture, query caption, [(result picture, caption, hit), ...])``;
    ``hit`` True / False frames the result green / red (None: no frame). Each picture is
    min-max scaled on its own.
    """
    plt = pyplot()
    k = max(len(r[2]) for r in rows)
    fig, axes = plt.subplots(len(rows), k + 1, figsize=(1.5 * (k + 1), 1.6 * len(rows)), squeeze=False)
    for i, (q, qcap, results) in enumerate(rows):
        cells = [(q, qcap, None)] + list(results)
        for j in range(k + 1):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(cells):
                ax.axis("off")
                continue
            pic, cap, hit = cells[j]
            pic = _scaled(pic)
            ax.imshow(pic, cmap=None if pic.ndim == 3 else "gray", vmin=0, vmax=1, aspect="auto",
                      interpolation="nearest")
            ax.set_title(cap, fontsize=7)
            colour = {True: "tab:green", False: "tab:red", None: "black"}[hit]
            for side in ax.spines.values():
                side.set_edgecolor(colour)
                side.set_linewidth(2.5 if hit is not None else 1.0)
        axes[i, 0].set_ylabel("query", fontsize=7)
    return finish(fig, out, title)
