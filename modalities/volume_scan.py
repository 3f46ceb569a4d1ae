"""The volume data scan: nibabel headers of up to 64 evenly spaced files -> facts and fits.

Shapes, voxel sizes and the RAS axis order come from the header (``nib.load`` reads no
voxels); the intensity range from the voxels of at most :data:`RANGE_FILES` files of at most
:data:`RANGE_VOXELS` voxels. The rules are in :mod:`omnipatch.modalities.volume`'s docstring; the files are read
through :mod:`omnipatch.modalities.volume_read` (the dataset module imports this one, not
the other way round).
"""

from __future__ import annotations

import math
import statistics

import numpy as np

from omnipatch.modalities.volume_read import load_header, series_kind, volume_entries
from omnipatch.train.plan import evenly, read_evenly

#: files whose header the scan reads
#: files (small ones only) whose voxels give the intensity range
RANGE_FILES, RANGE_VOXELS = 4, 1 << 22


def ras_extent(img, spacing=None) -> tuple[list[int], list[float]]:
    """``(voxels per RAS axis after resampling to spacing, voxel size per RAS axis in mm)``."""
    import nibabel as nib

    shape = [int(s) for s in img.shape[:3]]
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    try:
        axes = [int(a) for a in nib.io_orientation(img.affine)[:, 0]]
    except Exception:  # a degenerate affine: the reader says so; keep the stored order here
        axes = [0, 1, 2]
    if sorted(axes) != [0, 1, 2]:
        axes = [0, 1, 2]
    ras, mm = [0] * 3, [0.0] * 3
    for i, a in enumerate(axes):
        ras[a], mm[a] = shape[i], zooms[i]
    if spacing:
        sp = [float(spacing)] * 3 if isinstance(spacing, (int, float)) else [float(s) for s in spacing]
        ras = [max(1, math.floor(n * z / s + 1e-6)) for n, z, s in zip(ras, mm, sp)]
    return ras, mm


def _channels(img, series: str) -> int:
    """Channels of one sample of ``img``, as :class:`~omnipatch.modalities.volume.VolumeDataset` reads it."""
    if len(img.shape) == 3:
        return 1
    kind = series_kind(img, series)
    return 1 if kind in ("frames", "mean") else int(img.shape[-1])


#: a data set of few volumes is cut into enough random crops for a full default batch
TARGET_SAMPLES = 128


def scan(source, options: dict, explicit: set) -> tuple[dict, dict]:
    """Facts (volumes, shapes, spacing, channels, intensity range) and fits (roi_size, channels).

    Args:
        source: folder / glob / manifest / list, as :class:`~omnipatch.modalities.volume.VolumeDataset`.
        options: the defaults updated by the user's options.
        explicit: the options the user set (never fitted).
    Returns:
        ``(facts, {option: (value, reason)})``.
    """
    def header(e):  # an unknown series value fails here too: the reader names it later
        img = load_header(e.path)
        ext, mm = ras_extent(img, options.get("spacing"))
        return img, ext, mm, _channels(img, options["series"])

    entries = volume_entries(source)
    facts: dict = {"volumes": len(entries)}
    extents, sizes, chans, dims, imgs = [], set(), set(), set(), []
    for e, (img, ext, mm, c) in read_evenly(entries, header, facts):
        extents.append(ext)
        sizes.add(tuple(round(z, 3) for z in mm))
        dims.add(len(img.shape))
        chans.add(c)
        imgs.append((e.path, img))
    if not extents:
        return facts, {}
    vox = [math.prod(x) for x in extents]
    after = " (after spacing)" if options.get("spacing") else ""
    facts[f"smallest RAS shape{after}"] = extents[int(np.argmin(vox))]
    facts[f"largest RAS shape{after}"] = extents[int(np.argmax(vox))]
    facts["median voxels"] = int(statistics.median(vox))
    facts["voxel sizes (mm)"] = sorted(sizes)[:4]
    facts["dimensions"] = sorted(dims)
    facts["channels"] = sorted(chans)
    lo_hi = _intensity_range(imgs)
    if lo_hi:
        facts["intensity range (a few files)"] = lo_hi

    fits: dict = {}
    ps = options["patch_size"]
    ps = [int(ps)] * 3 if isinstance(ps, (int, float)) else [int(p) for p in ps]
    roi = options["roi_size"]
    roi = [int(roi)] * 3 if isinstance(roi, (int, float)) else [int(r) for r in roi]
    if "roi_size" not in explicit and len(ps) == 3 and len(roi) == 3:
        smallest = [min(x[a] for x in extents) for a in range(3)]
        new = [r if m >= r else max(p, m // p * p) for m, r, p in zip(smallest, roi, ps)]
        if new != roi:
            fits["roi_size"] = (new, f"the smallest extent per RAS axis is {'x'.join(map(str, smallest))} voxels"
                                     f"{after}: crops of {'x'.join(map(str, new))} (multiples of the patch "
                                     f"{'x'.join(map(str, ps))}) instead of padding to {'x'.join(map(str, roi))}")
    crops = int(options.get("crops_per_volume") or 1)
    larger = [x for x in extents if any(a > r for a, r in zip(x, roi))]
    if ("crops_per_volume" not in explicit and options["crop"] == "random" and larger
            and len(entries) * crops < TARGET_SAMPLES):
        k = min(256, math.ceil(TARGET_SAMPLES / len(entries)))
        fits["crops_per_volume"] = (k, f"{len(entries)} volume(s): {k} random crops each give "
                                       f"{len(entries) * k} samples per epoch (pretraining only; embed reads one)")
    if "channels" not in explicit and options.get("channels") is None and len(chans) == 1:
        c = next(iter(chans))
        fits["channels"] = (c, f"all {len(extents)} scanned volumes have {c} channel{'s' if c > 1 else ''}")
    return facts, fits


def _intensity_range(imgs: list) -> list[float] | None:
    """``[min, max]`` of the voxels of up to :data:`RANGE_FILES` evenly spaced small files."""
    small = [(p, img) for p, img in imgs if math.prod(img.shape) <= RANGE_VOXELS]
    lo, hi = math.inf, -math.inf
    for i in evenly(len(small), RANGE_FILES):
        try:
            a = np.asanyarray(small[i][1].dataobj, dtype=np.float32)
        except Exception:  # truncated or corrupt voxel data: the reader names the file
            continue
        a = a[np.isfinite(a)]
        if a.size:
            lo, hi = min(lo, float(a.min())), max(hi, float(a.max()))
    return [lo, hi] if lo <= hi else None
