"""Volume adapter: 3-D cube patches on the grid adapter, plus whole-volume embedding with
MONAI's sliding-window inferer and a three-orthogonal-slice picture.

Input layout ``(B, C, X, Y, Z)`` (RAS, as :mod:`omnipatch.modalities.volume` produces);
a patch of ``px * py * pz * C`` voxels is one token; targets are raw voxels (after the
per-channel standardisation), so reconstruction is in voxel space. The modality's default
mask is ``block``: cubes of ``block_size**3`` patches are hidden together, so the model
cannot fill a hole by copying its immediate neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from omnipatch.adapters.grid import GridAdapter
from omnipatch.batch import Batch
from omnipatch.errors import OmnipatchError
from omnipatch.modality import ADAPTERS, MODALITIES


@ADAPTERS.register("volume", "3-D cube patches of medical volumes (voxel-space MAE targets)")
class VolumeAdapter(GridAdapter):
    """Args: as :class:`GridAdapter`, ``patch_size`` an int (cube) or ``[px, py, pz]``."""

    registry_name = "volume"

    def __init__(self, in_chans: int, patch_size: int | list[int], dim: int,
                 mean: list[float] | None = None, std: list[float] | None = None, modality: str = "volume",
                 pos_grid: list[int] | None = None):
        ps = [patch_size] * 3 if isinstance(patch_size, int) else list(patch_size)
        if len(ps) != 3:
            raise OmnipatchError(f"volume: patch_size needs 3 values, got {patch_size}")
        super().__init__(modality, in_chans, ps, dim, mean, std, pos_grid)


# -- whole-volume embedding ---------------------------------------------------------------------
@dataclass
class VolumeEmbedding:
    """Result of :func:`embed_volume`.

    Attributes:
        embedding: ``(D,)`` mean of the feature map over patches that contain foreground.
        feature_map: ``(D, gx, gy, gz)`` patch-level features stitched from overlapping
            windows (one cell per ``patch_size`` voxels of the preprocessed volume).
        windows: number of sliding windows run through the encoder.
    """

    embedding: Tensor
    feature_map: Tensor
    windows: int


@torch.no_grad()
def embed_volume(pre, volume: str | Path | Tensor, roi_size: list[int] | None = None, overlap: float = 0.25,
                 sw_batch_size: int = 8, mode: str = "gaussian") -> VolumeEmbedding:
    """Embed a volume larger than the training crop with MONAI's ``sliding_window_inference``.

    Every ``roi_size`` window goes through the adapter and the encoder (no masking); the
    per-patch encoder outputs form a ``(D, gx, gy, gz)`` map per window, which MONAI blends
    (``mode="gaussian"`` weights window centres) into one map for the whole volume.

    Args:
        pre: a loaded run (:func:`omnipatch.api.load`) of the ``volume`` modality.
        volume: a NIfTI path (preprocessed with the run's options, without cropping) or an
            already preprocessed ``(C, X, Y, Z)`` tensor.
        roi_size: window size; defaults to the run's ``roi_size``.
        overlap: fraction of overlap between neighbouring windows.
    """
    from monai.inferers import sliding_window_inference

    model = pre.model.eval()
    adapter = model.adapters[pre.modality]
    if not isinstance(adapter, GridAdapter) or adapter.spatial_dims != 3:
        raise OmnipatchError(f"embed_volume needs a 3-D grid adapter, the run has {type(adapter).__name__}")
    if isinstance(volume, (str, Path)):
        vol = pre.open([str(volume)]).full_volume(0)
    else:
        vol = torch.as_tensor(volume).float()
    if vol.dim() != 4 or vol.shape[0] != adapter.in_chans:
        raise OmnipatchError(f"embed_volume expects (C={adapter.in_chans}, X, Y, Z), got {tuple(vol.shape)}")
    roi = list(roi_size or pre.spec.options_for(pre.modality).get("roi_size")
               or MODALITIES.get(pre.modality).options["roi_size"])
    ps = adapter.patch_size
    # pad to at least one window and to whole patches, so the map has an integer scale
    target = [max(r, -(-s // p) * p) for s, r, p in zip(vol.shape[1:], roi, ps)]
    pad = []
    for s, t in zip(reversed(vol.shape[1:]), reversed(target)):
        pad += [0, t - s]
    vol = F.pad(vol, pad)
    device = next(model.parameters()).device
    count = [0]

    def predictor(x: Tensor) -> Tensor:  # (b, C, *roi) -> (b, D, *grid)
        t, h = model.forward_tokens(Batch(x=x), pre.modality)
        count[0] += x.shape[0]
        return h.float().transpose(1, 2).reshape(x.shape[0], h.shape[-1], *t.grid)

    fmap = sliding_window_inference(vol[None].to(device), roi, sw_batch_size, predictor, overlap=overlap,
                                    mode=mode)[0]
    fmap = torch.as_tensor(fmap).float().cpu()
    fg = F.avg_pool3d((vol.abs().sum(0, keepdim=True) > 0).float()[None], kernel_size=ps, stride=ps)[0, 0] > 0
    fg = fg[: fmap.shape[1], : fmap.shape[2], : fmap.shape[3]]
    emb = fmap[:, fg].mean(1) if fg.any() else fmap.flatten(1).mean(1)
    return VolumeEmbedding(embedding=emb, feature_map=fmap, windows=count[0])


# -- pictures -----------------------------------------------------------------------------------
def orthogonal_slices(vol: Tensor, center: tuple[int, int, int] | None = None) -> dict[str, Tensor]:
    """Axial / coronal / sagittal slices through ``center`` of ``vol (X, Y, Z)`` (RAS), each
    oriented for display with ``origin="lower"`` (rows: Y, Z, Z; columns: X, X, Y)."""
    X, Y, Z = vol.shape
    cx, cy, cz = center or (X // 2, Y // 2, Z // 2)
    return {"axial": vol[:, :, cz].T, "coronal": vol[:, cy, :].T, "sagittal": vol[cx, :, :].T}


def save_orthogonal_slices(pictures: dict[str, Tensor], out: str | Path, sample: int = 0, channel: int = 0,
                           title: str = "") -> Path:
    """Rows original / masked / reconstruction, columns axial / coronal / sagittal.

    Args:
        pictures: ``{"original", "masked", "reconstruction": (B, C, X, Y, Z)}`` as returned
            by ``OmniModel.reconstruct`` (missing rows are skipped).
        sample, channel: which volume of the batch and which channel to show.
    """
    from omnipatch.plots import finish, pyplot

    plt = pyplot()
    rows = [k for k in ("original", "masked", "reconstruction") if k in pictures] or list(pictures)
    orig = pictures[rows[0]][sample, channel].float().cpu()
    lo, hi = float(orig.min()), float(orig.max())
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.6 * len(rows)), squeeze=False)
    for i, r in enumerate(rows):
        vol = pictures[r][sample, channel].float().cpu()
        for j, (name, sl) in enumerate(orthogonal_slices(vol).items()):
            ax = axes[i, j]
            ax.imshow(sl.numpy(), cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
            if j == 0:
                ax.set_ylabel(r, fontsize=9)
    return finish(fig, out, title)
