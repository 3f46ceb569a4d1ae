"""Volume files: the NIfTI / MGH reading the dataset and the data scan share (nibabel).

:func:`volume_entries` finds the files of a source, :func:`load_header` opens one without
reading voxels, :func:`series_kind` says how a 4th axis is read and :func:`read_volume` decodes
the voxels (with the checks the module docstring of :mod:`omnipatch.modalities.volume` lists).
:mod:`omnipatch.modalities.volume` (the dataset) and :mod:`omnipatch.modalities.volume_scan`
(the scan) import from here, never from each other.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from omnipatch.errors import BadSampleError, OmnipatchError
from omnipatch.modalities.sources import resolve

SUFFIXES = (".nii", ".nii.gz", ".mgz", ".mgh")
TIME_UNITS = ("sec", "msec", "usec")
SERIES = ("auto", "frames", "channels", "mean")


def is_volume_file(path: str) -> bool:
    return str(path).lower().endswith(SUFFIXES)


def volume_entries(source) -> list:
    """The :class:`~omnipatch.modalities.sources.Entry` list of a folder, glob, manifest or list."""
    entries = resolve(source, (".nii", ".gz", ".mgz", ".mgh"))
    if isinstance(source, (str, Path)) and not str(source).lower().endswith((".csv", ".parquet")):
        entries = [e for e in entries if is_volume_file(e.path)]
        if not entries:
            raise OmnipatchError(f"{source}: no NIfTI/MGH files ({', '.join(SUFFIXES)})")
    return entries


def load_header(path: str):
    """nibabel image proxy (header parsed, voxels not read) or BadSampleError."""
    import nibabel as nib

    p = Path(path)
    if not p.is_file():
        raise BadSampleError(path, "file not found")
    if p.stat().st_size == 0:
        raise BadSampleError(path, "empty file")
    try:
        return nib.load(path)
    except Exception as e:  # ImageFileError, HeaderDataError, gzip/zlib errors in the header
        raise BadSampleError(path, f"not a readable NIfTI/MGH file ({error_reason(e)})") from None


def error_reason(e: Exception) -> str:
    """``"ExceptionType: first line of its message"`` (a library error, for a bad-sample reason)."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def series_kind(img, series: str = "auto") -> str:
    """How the 4th axis of ``img`` is read: ``"frames"``, ``"channels"`` or ``"mean"``."""
    if series not in SERIES:
        raise OmnipatchError(f"series must be one of {SERIES}, got {series!r}")
    if series != "auto":
        return series
    if len(img.shape) == 5:  # NIfTI vector intent (X, Y, Z, 1, C)
        return "channels"
    get_units = getattr(img.header, "get_xyzt_units", None)
    unit = get_units()[1] if get_units is not None else "unknown"
    return "frames" if unit in TIME_UNITS else "channels"


def check_affine(affine: np.ndarray, path: str) -> np.ndarray:
    """The voxel-to-world matrix, or BadSampleError when it is not finite or not invertible."""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.isfinite(a).all():
        raise BadSampleError(path, "affine is not a finite 4x4 matrix")
    det = float(np.linalg.det(a[:3, :3]))
    if abs(det) < 1e-9:
        raise BadSampleError(path, f"non-invertible affine (voxel-to-world determinant {det:.3g}); "
                                   "fix the header's qform/sform")
    return a


def read_volume(path: str, series: str = "auto", nan_voxels: str = "error") -> tuple[np.ndarray, np.ndarray]:
    """Decode a NIfTI/MGH file to ``(C, X, Y, Z)`` float32 voxels and its 4x4 affine.

    The 4th axis (if any) comes first as channels; for ``series="frames"`` those channels
    are frames (the dataset splits them), for ``"mean"`` they are averaged to one.

    Args:
        path: the file.
        series: ``auto | frames | channels | mean`` (see the module docstring).
        nan_voxels: ``"error"`` (default) rejects volumes with NaN/inf voxels; ``"zero"``
            replaces them by 0.
    Raises:
        BadSampleError: with the file and the reason.
    """
    img = load_header(path)
    shape = tuple(int(s) for s in img.shape)
    kind = series_kind(img, series)
    if len(shape) == 5 and shape[3] != 1:
        raise BadSampleError(path, f"5-D image {shape} is neither a 4-D series nor a vector image (X, Y, Z, 1, C)")
    if len(shape) not in (3, 4, 5):
        raise BadSampleError(path, f"wrong dimensionality: expected a 3-D volume, a 4-D series or a "
                                   f"multi-channel volume, got shape {shape}")
    if min(shape[:3]) < 1:
        raise BadSampleError(path, f"empty volume of shape {shape}")
    affine = check_affine(img.affine, path)
    try:
        if str(path).lower().endswith((".gz", ".mgz")):
            # decompress the whole stream: gzip then checks its CRC and length, which reading
            # only the voxel bytes (nibabel's lazy path) never does, so corruption is caught
            with open(path, "rb") as f:
                img = type(img).from_bytes(gzip.decompress(f.read()))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as e:  # EOFError / BadGzipFile / zlib.error / short data
        raise BadSampleError(path, f"cannot read the voxel data, truncated or corrupt file ({error_reason(e)})") from None
    if data.ndim == 5:
        data = data[:, :, :, 0, :]
    data = data[None] if data.ndim == 3 else np.moveaxis(data, 3, 0)
    if kind == "mean":
        data = data.mean(0, keepdims=True)
    bad = ~np.isfinite(data)
    if bad.any():
        if nan_voxels == "zero":
            data = np.where(bad, np.float32(0), data)
        else:
            raise BadSampleError(path, f"{int(bad.sum())} NaN/inf voxels (set nan_voxels='zero' to replace them)")
    return np.ascontiguousarray(data), affine
