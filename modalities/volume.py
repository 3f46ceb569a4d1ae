"""3-D medical volumes: NIfTI (``.nii``, ``.nii.gz``) and MGH (``.mgz``) -> ``(C, X, Y, Z)`` tensors.

Reading goes through nibabel (header first, voxels on demand); preprocessing through MONAI
array transforms (imported lazily, only when a volume is decoded):

1. ``Orientation("RAS")``: axes become X left->right, Y posterior->anterior, Z
   inferior->superior, whatever the scanner stored.
2. ``Spacing(spacing)``: resampled to a target voxel size in mm (``spacing=None`` keeps it).
3. intensity: ``"percentiles"`` (MRI, the default) maps the ``percentiles`` (0.5, 99.5) of
   each channel of each volume to [0, 1] and clips (MR intensities have no absolute unit);
   ``"window"`` (CT) maps a fixed range, e.g. a Hounsfield ``window`` of (-1000, 1000), to
   [0, 1] and clips (use it too when crops of one scan must keep one scale); ``"none"``
   keeps the values.
4. ``CropForeground``: the bounding box of voxels above ``foreground_threshold`` (+2 voxels).
5. ``RandSpatialCrop(roi_size)`` (``crop="random"``, ``crops_per_volume`` seeded crops per
   volume) or ``CenterSpatialCrop`` (``crop="center"``), then ``SpatialPad(roi_size)`` with
   zeros: a small volume is padded with background, never stretched.

Steps 1-4 run once per volume and are kept in a small LRU cache, so many crops of one
large volume cost one decode + resample.

Multi-channel volumes and 4-D series (the documented choice, ``series=``):
    - ``"auto"`` (default): a 4-D file whose header declares a time unit (``xyzt_units``
      sec/msec/usec, i.e. fMRI, DWI and perfusion series) is a **series**: every 3-D frame
      is its own sample (id ``path#t<frame>``); any other 4-D file (stacked MRI sequences,
      NIfTI vector intent ``(X, Y, Z, 1, C)``) is **multi-channel**: the 4th axis becomes C.
    - ``"frames"``, ``"channels"``: force one of the two readings.
    - ``"mean"``: average the 4th axis into one channel (e.g. a mean EPI).
  Several sequences stored as separate files are not merged: stack them into one 4-D file.

Fitted to the data (``omnipatch inspect`` / ``pretrain``, :mod:`omnipatch.modalities.volume_scan`;
the nibabel headers of up to 64 evenly spaced files, the voxels of at most 4 small ones for
the intensity range), unless set:

- ``roi_size``: per RAS axis, the smallest volume's extent after ``spacing`` rounded down
  to a multiple of ``patch_size`` (at least one patch), where it is below the default 32:
  20 x 18 x 16 voxels with 8-voxel patches train on 16^3 crops, not on 32^3 crops that are
  mostly zero padding;
- ``channels``: the channel count every scanned file agrees on (3-D files and series frames:
  1), so a file with another count is named at once, at training and at embedding.

Bad input raises :class:`~omnipatch.errors.BadSampleError` naming the file and the reason
(missing, not NIfTI, truncated or corrupt gzip, wrong dimensionality, NaN voxels,
non-invertible affine); with ``on_bad_sample="skip"`` the sample is skipped and reported.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from omnipatch.batch import Batch, Sample
from omnipatch.encoder import region_pool
from omnipatch.errors import BadSampleError, OmnipatchError
from omnipatch.modalities import examples, volume_out
from omnipatch.modalities.base import FileDataset, Skipped, stream_reader
from omnipatch.modalities.volume_read import SERIES, error_reason, load_header, read_volume, series_kind, volume_entries
from omnipatch.modalities.volume_scan import scan
from omnipatch.modality import MODALITIES, ModalitySpec
from omnipatch.options import option, pick

INTENSITY = ("percentiles", "window", "none")


# -- preprocessing (MONAI) -------------------------------------------------------------------------
def preprocess(data: np.ndarray | Tensor, affine: np.ndarray, **options) -> Tensor:
    """Orientation RAS -> spacing -> intensity scaling -> foreground crop (MONAI transforms).

    Args:
        data: ``(C, X, Y, Z)`` voxels, ``affine`` their 4x4 voxel-to-world matrix.
        options: see :func:`preprocess_affine`.
    Returns:
        ``(C, X', Y', Z')`` float32 in RAS orientation.
    """
    return preprocess_affine(data, affine, **options)[0]


def preprocess_affine(data: np.ndarray | Tensor, affine: np.ndarray, *, spacing: list[float] | None = None,
                      intensity: str = "percentiles", window: tuple[float, float] = (-1000.0, 1000.0),
                      percentiles: tuple[float, float] = (0.5, 99.5), foreground_crop: bool = True,
                      foreground_threshold: float = 0.0) -> tuple[Tensor, np.ndarray]:
    """:func:`preprocess` and the 4x4 voxel-to-world affine of its output (MONAI tracks it
    through orientation, resampling and the foreground crop)."""
    from monai.data import MetaTensor
    from monai.transforms import (
        CropForeground,
        Orientation,
        ScaleIntensityRange,
        ScaleIntensityRangePercentiles,
        Spacing,
    )

    if intensity not in INTENSITY:
        raise OmnipatchError(f"intensity must be one of {INTENSITY}, got {intensity!r}")
    x = MetaTensor(torch.as_tensor(data, dtype=torch.float32), affine=torch.as_tensor(affine, dtype=torch.float64))
    x = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))(x)
    if spacing:
        sp = [float(spacing)] * 3 if isinstance(spacing, (int, float)) else [float(s) for s in spacing]
        x = Spacing(pixdim=sp, mode="bilinear", dtype=np.float32)(x)
    if intensity == "percentiles":
        x = ScaleIntensityRangePercentiles(float(percentiles[0]), float(percentiles[1]), 0.0, 1.0,
                                           clip=True, channel_wise=True)(x)
    elif intensity == "window":
        x = ScaleIntensityRange(float(window[0]), float(window[1]), 0.0, 1.0, clip=True)(x)
    if foreground_crop:
        thr = float(foreground_threshold)
        x = CropForeground(select_fn=lambda v: v > thr, margin=2, allow_smaller=True)(x)
    out = x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)
    return out.float().contiguous(), np.asarray(x.affine, dtype=np.float64)


def crop_pad(vol: Tensor, roi_size: tuple[int, int, int], mode: str, seed: int) -> Tensor:
    """A ``roi_size`` crop (MONAI ``RandSpatialCrop`` seeded by ``seed``, or centre), zero-padded.

    ``vol (C, X, Y, Z)`` -> ``(C, *roi_size)``; a MONAI ``MetaTensor`` keeps its affine
    (:func:`crop_affine`).
    """
    from monai.transforms import CenterSpatialCrop, RandSpatialCrop, SpatialPad

    if mode == "random":
        crop = RandSpatialCrop(list(roi_size), random_size=False)
        crop.set_random_state(seed=seed % (2**32))
        vol = crop(vol)
    elif mode == "center":
        vol = CenterSpatialCrop(list(roi_size))(vol)
    else:
        raise OmnipatchError(f"crop must be 'random' or 'center', got {mode!r}")
    vol = SpatialPad(list(roi_size), mode="constant", value=0.0)(vol)
    out = vol.as_tensor() if hasattr(vol, "as_tensor") else torch.as_tensor(vol)
    return out.float().contiguous()


def crop_affine(vol: Tensor, affine: np.ndarray, roi_size: tuple[int, int, int], mode: str, seed: int) -> np.ndarray:
    """The voxel-to-world affine of :func:`crop_pad`'s output for ``vol`` on ``affine`` (the
    same crop: same size, mode and seed)."""
    from monai.data import MetaTensor
    from monai.transforms import CenterSpatialCrop, RandSpatialCrop, SpatialPad

    x = MetaTensor(vol, affine=torch.as_tensor(affine, dtype=torch.float64))
    if mode == "random":
        crop = RandSpatialCrop(list(roi_size), random_size=False)
        crop.set_random_state(seed=seed % (2**32))
        x = crop(x)
    else:
        x = CenterSpatialCrop(list(roi_size))(x)
    return np.asarray(SpatialPad(list(roi_size), mode="constant", value=0.0)(x).affine, dtype=np.float64)


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=4).digest(), "little")


# -- dataset ------------------------------------------------------------------------------------
class VolumeDataset(FileDataset):
    """Volumes from a folder, glob or manifest; one sample = one ``roi_size`` crop.

    A volume yields ``crops_per_volume`` seeded random crops per frame, except a volume that
    already fits in ``roi_size`` (after resampling), which yields one sample (its crops would
    all be the same). Sample ids are the entry id, plus ``#t<frame>`` for series frames and
    ``#c<k>`` for the k-th crop when there are several.

    Args:
        source: folder / glob / manifest (``path``, optional ``id``, ``label``) / list.
        roi_size: crop size in voxels ``(X, Y, Z)`` (an int for a cube); the model input.
        spacing: target voxel size in mm, or None to keep the file's.
        intensity, window, percentiles, foreground_crop, foreground_threshold: see
            :func:`preprocess`.
        crop: ``"random"`` or ``"center"``.
        crops_per_volume: random crops per volume (per frame) in one epoch.
        series: how the 4th axis is read (module docstring).
        channels: expected channel count; None infers it from the first readable file.
        nan_voxels: ``"error"`` or ``"zero"``.
        seed: seeds the crops (crop k of volume v is the same every epoch and every run).
        cache_volumes: preprocessed volumes kept in memory (LRU).
        on_bad_sample: ``raise`` or ``skip``.
    """

    def __init__(self, source, roi_size=(32, 32, 32), spacing=None, intensity: str = "percentiles",
                 window=(-1000.0, 1000.0), percentiles=(0.5, 99.5), foreground_crop: bool = True,
                 foreground_threshold: float = 0.0, crop: str = "random", crops_per_volume: int = 1,
                 series: str = "auto", channels: int | None = None, nan_voxels: str = "error",
                 seed: int = 0, cache_volumes: int = 4, on_bad_sample: str = "raise"):
        super().__init__(volume_entries(source), on_bad_sample)
        self.roi_size = tuple([int(roi_size)] * 3 if isinstance(roi_size, int) else [int(r) for r in roi_size])
        if len(self.roi_size) != 3 or min(self.roi_size) < 1:
            raise OmnipatchError(f"roi_size must be 3 positive ints, got {roi_size}")
        if series not in SERIES:
            raise OmnipatchError(f"series must be one of {SERIES}, got {series!r}")
        if nan_voxels not in ("error", "zero"):
            raise OmnipatchError(f"nan_voxels must be 'error' or 'zero', got {nan_voxels!r}")
        if crop not in ("random", "center"):
            raise OmnipatchError(f"crop must be 'random' or 'center', got {crop!r}")
        self.prep = dict(spacing=spacing, intensity=intensity, window=tuple(window),
                         percentiles=tuple(percentiles), foreground_crop=bool(foreground_crop),
                         foreground_threshold=float(foreground_threshold))
        if intensity not in INTENSITY:
            raise OmnipatchError(f"intensity must be one of {INTENSITY}, got {intensity!r}")
        self.crop, self.crops_per_volume, self.series = crop, max(1, int(crops_per_volume)), series
        self.nan_voxels, self.seed, self.cache_volumes = nan_voxels, int(seed), max(1, int(cache_volumes))
        self._cache: OrderedDict[int, Tensor] = OrderedDict()
        self._affines: dict[int, np.ndarray] = {}  # entry -> affine of its preprocessed volume
        self.items: list[tuple[int, int, int, int]] = []  # (entry, frame or -1, crop, n_crops)
        self._index()
        self.channels = int(channels) if channels is not None else self._infer_channels()

    def _index(self) -> None:
        """Read headers only: frames per file and whether it fits in the ROI."""
        for j, e in enumerate(self.entries):
            try:
                img = load_header(e.path)
            except BadSampleError:
                if self.on_bad_sample == "raise":
                    raise
                self.items.append((j, -1, 0, 1))
                continue
            shape = img.shape
            kind = series_kind(img, self.series)
            frames = shape[3] if (len(shape) == 4 and kind == "frames") else 0
            zooms = [float(z) for z in img.header.get_zooms()[:3]]
            est = sorted(shape[:3])  # orientation permutes axes: compare sorted extents
            if self.prep["spacing"]:
                sp = self.prep["spacing"]
                sp = [float(sp)] * 3 if isinstance(sp, (int, float)) else [float(s) for s in sp]
                # axis permutation unknown before orientation: use the coarsest target spacing
                est = sorted(math.ceil(s * z / min(sp)) for s, z in zip(shape[:3], zooms))
            fits = all(a <= b for a, b in zip(est, sorted(self.roi_size)))
            n = 1 if (fits or self.crop == "center") else self.crops_per_volume
            for f in (range(frames) if frames else [-1]):
                self.items += [(j, f, k, n) for k in range(n)]

    def _infer_channels(self) -> int:
        seen = 0
        for j, f, _, _ in self.items:
            if seen >= 16:
                break
            seen += 1
            try:
                img = load_header(self.entries[j].path)
            except BadSampleError:
                continue
            if f >= 0 or len(img.shape) == 3:
                return 1
            kind = series_kind(img, self.series)
            return 1 if kind == "mean" else int(img.shape[-1])
        raise OmnipatchError(f"none of the first {seen} volumes could be read (first: {self.entries[0].path})")

    def __len__(self) -> int:
        return len(self.items)

    def volume(self, j: int) -> Tensor:
        """Preprocessed ``(C_all, X, Y, Z)`` volume of entry ``j`` (frames as channels), cached."""
        if j in self._cache:
            self._cache.move_to_end(j)
            return self._cache[j]
        e = self.entries[j]
        series = "channels" if self.series in ("auto", "frames") else self.series
        data, affine = read_volume(e.path, series=series, nan_voxels=self.nan_voxels)
        vol, self._affines[j] = preprocess_affine(data, affine, **self.prep)
        if min(vol.shape[1:]) == 0:
            raise BadSampleError(e.path, "no foreground voxels above the threshold")
        self._cache[j] = vol
        while len(self._cache) > self.cache_volumes:
            self._cache.popitem(last=False)
        return vol

    def __getitem__(self, i: int) -> Sample | Skipped:
        j, f, k, n = self.items[i]
        entry = self.entries[j]
        try:
            return self._read(j, f, k, n)
        except BadSampleError as e:
            if self.on_bad_sample == "skip":
                return Skipped(e.source, e.reason)
            raise
        except Exception as e:  # a library failed deep inside: name the file and the reason
            err = BadSampleError(entry.path, f"cannot preprocess ({error_reason(e)})")
            if self.on_bad_sample == "skip":
                return Skipped(err.source, err.reason)
            raise err from e

    def _read(self, j: int, f: int, k: int, n: int) -> Sample:
        entry = self.entries[j]
        vol = self.volume(j)
        if f >= 0:
            vol = vol[f:f + 1]
        elif vol.shape[0] != self.channels:
            raise BadSampleError(entry.path, f"has {vol.shape[0]} channels, expected {self.channels}")
        x = crop_pad(vol, self.roi_size, self.crop, _seed(self.seed, entry.path, f, k))
        sid = entry.id + (f"#t{f}" if f >= 0 else "") + (f"#c{k}" if n > 1 else "")
        return Sample(x=x, id=sid, label=self.label_of(entry))

    def sample_affine(self, i: int) -> np.ndarray:
        """The 4x4 voxel-to-world affine (RAS mm, the file's world space) of sample ``i``'s
        voxel grid: the file's affine through orientation, resampling and both crops."""
        j, f, k, _ = self.items[i]
        vol = self.volume(j)
        vol = vol[f:f + 1] if f >= 0 else vol
        return crop_affine(vol, self._affines[j], self.roi_size, self.crop, _seed(self.seed, self.entries[j].path, f, k))

    def full_volume(self, i: int = 0) -> Tensor:
        """The whole preprocessed volume behind sample ``i`` (no crop): ``(C, X, Y, Z)``."""
        j, f, _, _ = self.items[i]
        vol = self.volume(j)
        return vol[f:f + 1] if f >= 0 else vol


def channel_stats(dataset, max_samples: int = 64) -> tuple[list[float], list[float]]:
    """Per-channel mean / std over up to ``max_samples`` evenly spaced readable samples."""
    n = len(dataset)
    idx = np.linspace(0, n - 1, num=min(n, max_samples)).round().astype(int)
    xs = [s.x for s in (dataset[int(i)] for i in idx) if isinstance(s, Sample)]
    if not xs:
        raise OmnipatchError("no readable volumes to compute normalisation statistics")
    x = torch.stack([t.flatten(1) for t in xs], 0).transpose(0, 1).reshape(xs[0].shape[0], -1)
    return x.mean(1).tolist(), x.std(1).clamp_min(1e-6).tolist()


# -- views --------------------------------------------------------------------------------------
def augment(batch: Batch, generator: torch.Generator, strength: float = 1.0) -> Batch:
    """One random view per volume, batched: random resized crop (60-100 % per axis), rotation
    up to 10 degrees about Z, left-right flip with probability 0.5, contrast / brightness
    jitter and Gaussian noise. ``x (B, C, X, Y, Z)``."""
    x = batch.x.float()
    B = x.shape[0]
    g, dev = generator, x.device
    r = lambda *s: torch.rand(*s, generator=g, device=g.device).to(dev)  # noqa: E731
    scale = 1.0 - strength * 0.4 * r(B, 3)  # kept fraction per axis
    shift = (r(B, 3) * 2 - 1) * (1 - scale)
    ang = (r(B) * 2 - 1) * math.radians(10) * strength
    flip = torch.where(r(B) < 0.5 * min(strength, 1.0), -1.0, 1.0)
    cos, sin = ang.cos(), ang.sin()
    theta = torch.zeros(B, 3, 4, device=dev)
    # affine_grid's coordinates are (z, y, x) = (Z, Y, X) of our (X, Y, Z) volume, reversed
    theta[:, 0, 0], theta[:, 0, 3] = scale[:, 2], shift[:, 2]
    theta[:, 1, 1], theta[:, 1, 2], theta[:, 1, 3] = scale[:, 1] * cos, -scale[:, 1] * sin, shift[:, 1]
    theta[:, 2, 1], theta[:, 2, 2], theta[:, 2, 3] = scale[:, 0] * sin * flip, scale[:, 0] * cos * flip, shift[:, 0]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    dims = tuple(range(1, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    sd = x.std(dim=dims, keepdim=True).clamp_min(1e-3)
    shape = (B,) + (1,) * (x.dim() - 1)
    x = (x - mean) * (1 + (r(*shape) * 2 - 1) * 0.3 * strength) + mean + (r(*shape) * 2 - 1) * 0.1 * strength * sd
    x = x + torch.randn(x.shape, generator=g, device=g.device).to(dev) * 0.02 * strength * sd
    return batch.replace(x=x)


# -- registration -------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataOptions:
    """How volumes are read and preprocessed (the module docstring has the steps)."""

    roi_size: int | list[int] = option([32, 32, 32], "32^3 voxels in 8^3 patches: 64 tokens, a CPU budget (the "
                                       "scan lowers it to the smallest volume)", what="crop size per RAS axis")
    spacing: float | list[float] | None = option(None, "None keeps each file's voxel size (no resampling)",
                                                 what="target voxel size in mm")
    intensity: str = option("percentiles", "MR intensities have no absolute unit; 'window' for CT",
                            what="intensity mapping (percentiles, window, none)")
    window: list[float] = option([-1000.0, 1000.0], "air to dense bone in Hounsfield units",
                                 what="intensity='window': the range mapped to [0, 1]")
    percentiles: list[float] = option([0.5, 99.5], "robust to a few hot voxels, as nnU-Net clips",
                                      what="intensity='percentiles': the range mapped to [0, 1]")
    foreground_crop: bool = option(True, "crops land on the subject, not on empty background",
                                   what="crop to the voxels above the threshold first")
    foreground_threshold: float = option(0.0, "background is zero after the default intensity mapping",
                                         what="foreground: voxels above this value")
    crop: str = option("random", "random crops are views for contrastive learning; 'center' for embedding one "
                       "fixed region", what="crop (random or center)")
    crops_per_volume: int = option(1, "one crop per volume and epoch (the scan raises it for volumes much larger "
                                   "than a crop)", what="seeded crops taken from each volume")
    series: str = option("auto", "a 4-D file with a time unit is a series of frames, any other one channels",
                         what="4-D files: auto, frames, channels or mean")
    channels: int | None = option(None, "None: the count the first readable file has (the scan checks they "
                                  "agree)", what="channel count")
    nan_voxels: str = option("error", "NaN voxels are a broken file until said otherwise ('zero')",
                             what="NaN voxels: error or zero")
    seed: int = option(0, "the random crops repeat run to run", what="seed of the random crops")
    cache_volumes: int = option(4, "many crops of one volume cost one decode; 4 preprocessed volumes fit in memory",
                                what="preprocessed volumes kept in memory")


@dataclass(frozen=True)
class AdapterOptions:
    """How the volume adapter patches crops."""

    patch_size: int | list[int] = option(8, "8^3-voxel patches: 4 x 4 x 4 tokens per 32^3 crop",
                                         what="patch size per axis (an int: a cube)")


def _adapter_kwargs(dataset: VolumeDataset, options: dict) -> dict:
    mean, std = channel_stats(dataset)
    ps = pick(AdapterOptions, options).patch_size
    ps = [int(ps)] * 3 if isinstance(ps, (int, float)) else [int(p) for p in ps]
    bad = [(r, p) for r, p in zip(dataset.roi_size, ps) if r % p]
    if bad:
        raise OmnipatchError(f"volume: roi_size {list(dataset.roi_size)} is not a multiple of patch_size {ps}")
    return {"in_chans": dataset.channels, "patch_size": ps, "mean": mean, "std": std}


def _open(source, on_bad_sample: str = "raise", **options) -> VolumeDataset:
    return VolumeDataset(source, on_bad_sample=on_bad_sample, **asdict(pick(DataOptions, options)))


#: bins of the raw-feature histogram, over [0, 1] (the scale of the default intensity modes)
HIST_BINS = 32


def raw_features(sample: Sample) -> np.ndarray:
    """The raw-feature baseline: per channel, a 32-bin histogram over [0, 1] of the
    normalised crop (fractions of its voxels, values outside clipped into the end bins) plus
    its mean and std: ``34 * C`` values."""
    x = sample.x.float().flatten(1)  # (C, voxels)
    out = []
    for c in x:
        h = torch.histc(c.clamp(0.0, 1.0), bins=HIST_BINS, min=0.0, max=1.0) / max(1, c.numel())
        out += [h, torch.stack([c.mean(), c.std(unbiased=False)])]
    return torch.cat(out).numpy()


def readout(tokens, z: Tensor) -> Tensor:
    """The sample embedding of a crop: its tokens averaged over the left-right axis (X, after
    the RAS reorientation) and over 2 x 2 blocks of the anterior-posterior x inferior-superior
    plane, ``(B, 4 * D)``. It keeps where things lie in the crop, which the mean of all tokens
    loses, and stays invariant to the left-right flip the views teach. Measured on
    examples/volume_mni.py (README, Results), three seeds: linear probe 0.913-0.930 with the
    mean of the tokens, 0.947-0.960 with this readout; on three other label sets of the same
    crops (9 position classes, 3 along y, 3 along z) -0.003 to +0.05."""
    valid = None if tokens.padding_mask is None else ~tokens.padding_mask
    return region_pool(z, tokens.grid, (2, 2), mean_axes=(0,), valid=valid)


def read_mask_volume(path: str) -> np.ndarray:
    """A dense label map (segmentation target) from a NIfTI / MGH file (nibabel), voxel order as stored."""
    import nibabel as nib

    return np.asarray(nib.load(path).dataobj)


SPEC = ModalitySpec(
    name="volume",
    description="3-D medical volumes (NIfTI .nii/.nii.gz, MGH): MONAI RAS/spacing/intensity/crops",
    open_dataset=_open,
    adapter="volume",
    adapter_kwargs=_adapter_kwargs,
    augment=augment,
    default_mask="block",
    data_options=DataOptions,
    adapter_options=AdapterOptions,
    scan=scan,
    # examples/volume_mni.py, README "Which recipe": MAE + 0.5 NT-Xent
    recipe={"objectives": "mae+contrastive:0.5"},
    raw_features=raw_features,
    raw_name="32-bin intensity histogram",
    readout=readout,
    # the patch embedding (channels x patch voxels) and the intensity scale the adapter's
    # mean / std were measured on; roi_size, spacing and crops give valid grids (sin-cos
    # positions per grid), so they stay free
    model_options=("channels", "patch_size", "intensity", "window", "percentiles"),
    train_options=("crops_per_volume",),
    example=examples.volume,
    example_options={"roi_size": [8, 8, 8], "patch_size": 4, "crop": "center"},
    stream_reader=stream_reader,
    read_target=read_mask_volume,
    outputs=volume_out.OUTPUTS,
)
MODALITIES.add(SPEC.name, SPEC, SPEC.description)
