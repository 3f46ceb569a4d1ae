"""Images: PNG / JPEG / TIFF (16-bit, multi-band) / ``.npy`` -> ``(C, H, W)`` float tensors.

Layouts: TIFF band order comes from the file's own axes (planar or interleaved); ``.npy``
arrays are ``(H, W)`` or ``(H, W, C)``, or ``(C, H, W)`` when C <= 16 < W.

Readers: Pillow for PNG/JPEG, tifffile for TIFF (any band count, 8/16/32-bit), numpy for
``.npy`` (``allow_pickle=False``). Values are scaled to [0, 1] by their integer type's range;
float data is kept as is. Every image is resized to ``image_size`` (antialiased).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from omnipatch.batch import Batch, Sample
from omnipatch.errors import BadSampleError, OmnipatchError
from omnipatch.modalities import examples, image_out
from omnipatch.modalities.base import FileDataset, stream_reader
from omnipatch.modalities.sources import Entry, resolve
from omnipatch.modality import MODALITIES, ModalitySpec
from omnipatch.options import option, pick

EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy", ".bmp")


def read_array(path: str) -> np.ndarray:
    """Decode one image file to an ``(H, W, C)`` array, raising BadSampleError on failure."""
    suffix = path.lower().rsplit(".", 1)[-1]
    try:
        if suffix == "npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix in ("tif", "tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                arr = series.asarray()
                if arr.ndim == 3 and series.axes[0] not in "YX":  # planar (C, H, W) band stack
                    arr = np.moveaxis(arr, 0, -1)
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                if im.mode in ("P", "CMYK", "YCbCr", "LA", "PA"):
                    im = im.convert("RGBA" if "A" in im.mode else "RGB")
                arr = np.asarray(im)
    except FileNotFoundError:
        raise BadSampleError(path, "file not found") from None
    except Exception as e:
        raise BadSampleError(path, f"not a readable image ({type(e).__name__}: {e})") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or min(arr.shape[:2]) < 1:
        raise BadSampleError(path, f"expected a 2-D image (H, W[, C]), got array of shape {arr.shape}")
    if suffix == "npy" and arr.shape[0] <= 16 and arr.shape[2] > 16:  # (C, H, W) band stack
        arr = arr.transpose(1, 2, 0)
    return arr


def to_tensor(arr: np.ndarray, path: str) -> Tensor:
    """``(H, W, C)`` array -> ``(C, H, W)`` float32 scaled to [0, 1] for integer types."""
    if arr.dtype.kind in "ui":
        scale = float(np.iinfo(arr.dtype).max)
        x = torch.from_numpy(arr.astype(np.float32) / scale)
    elif arr.dtype.kind in "fb":
        x = torch.from_numpy(arr.astype(np.float32))
    else:
        raise BadSampleError(path, f"unsupported pixel type {arr.dtype}")
    if not torch.isfinite(x).all():
        raise BadSampleError(path, "contains NaN or infinite values")
    return x.permute(2, 0, 1).contiguous()


class ImageDataset(FileDataset):
    """Images from a folder, glob or manifest, resized to ``image_size``.

    Args:
        source: folder / glob / manifest (``path``, optional ``id``, ``label``).
        image_size: output ``(H, W)`` or an int for square.
        channels: expected channel count; None infers it from the first readable file.
            Grayscale files are repeated to 3 channels when 3 are expected and RGBA drops
            alpha; any other mismatch is an error naming the file.
        on_bad_sample: ``raise`` or ``skip`` (see :class:`FileDataset`).
    """

    def __init__(self, source, image_size: int | tuple[int, int] = 32, channels: int | None = None,
                 on_bad_sample: str = "raise"):
        super().__init__(resolve(source, EXTENSIONS), on_bad_sample)
        self.image_size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.channels = channels if channels is not None else self._infer_channels()

    def _infer_channels(self) -> int:
        for e in self.entries[:16]:
            try:
                c = read_array(e.path).shape[2]
                return 3 if c == 4 else c
            except BadSampleError:
                continue
        raise OmnipatchError(f"none of the first {min(16, len(self.entries))} images could be read "
                             f"(first: {self.entries[0].path})")

    def read(self, entry: Entry) -> Sample:
        x = to_tensor(read_array(entry.path), entry.path)
        c = x.shape[0]
        if c != self.channels:
            if c == 1 and self.channels == 3:
                x = x.expand(3, -1, -1)
            elif c == 4 and self.channels == 3:
                x = x[:3]
            else:
                raise BadSampleError(entry.path, f"has {c} channels, expected {self.channels}")
        if tuple(x.shape[1:]) != self.image_size:
            x = F.interpolate(x[None], size=self.image_size, mode="bilinear", antialias=True,
                              align_corners=False)[0]
        return Sample(x=x.contiguous(), id=entry.id, label=self.label_of(entry))


    def source_size(self, i: int) -> tuple[int, int]:
        """``(H, W)`` of sample ``i``'s file before it is resized to ``image_size``."""
        h, w, _ = _size_of(self.entries[i])
        return h, w


def channel_stats(dataset, max_samples: int = 512) -> tuple[list[float], list[float]]:
    """Per-channel mean / std over up to ``max_samples`` evenly spaced readable samples."""
    n = len(dataset)
    idx = np.linspace(0, n - 1, num=min(n, max_samples)).round().astype(int)
    xs = [s.x for s in (dataset[int(i)] for i in idx) if isinstance(s, Sample)]
    if not xs:
        raise OmnipatchError("no readable samples to compute normalisation statistics")
    x = torch.stack([t.flatten(1) for t in xs], 0).transpose(0, 1).reshape(xs[0].shape[0], -1)
    return x.mean(1).tolist(), x.std(1).clamp_min(1e-6).tolist()


def augment(batch: Batch, generator: torch.Generator, strength: float = 1.0) -> Batch:
    """One random view per sample, batched: random resized crop (scale 0.5-1, aspect 3/4-4/3),
    rotation up to 15 degrees, brightness/contrast jitter, Gaussian noise."""
    x = batch.x.float()
    B = x.shape[0]
    g, dev = generator, x.device
    r = lambda *s: torch.rand(*s, generator=g, device=g.device).to(dev)  # noqa: E731
    scale = 1.0 - strength * 0.5 * r(B)  # kept area fraction
    logr = (r(B) * 2 - 1) * math.log(4 / 3) * strength
    sx, sy = (scale * logr.exp()).sqrt().clamp(max=1), (scale / logr.exp()).sqrt().clamp(max=1)
    ang = (r(B) * 2 - 1) * math.radians(15) * strength
    tx, ty = (r(B) * 2 - 1) * (1 - sx), (r(B) * 2 - 1) * (1 - sy)
    cos, sin = ang.cos(), ang.sin()
    theta = torch.stack([torch.stack([sx * cos, -sy * sin, tx], 1), torch.stack([sx * sin, sy * cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = 1 + (r(B, 1, 1, 1) * 2 - 1) * 0.4 * strength
    bright = (r(B, 1, 1, 1) * 2 - 1) * 0.2 * strength * x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
    x = (x - mean) * contrast + mean + bright
    noise = torch.randn(x.shape, generator=g, device=g.device).to(dev)
    x = x + noise * 0.02 * strength * x.std(dim=(1, 2, 3), keepdim=True)
    return batch.replace(x=x)


@dataclass(frozen=True)
class DataOptions:
    """How image files are read."""

    image_size: int = option(32, "32 px in 4-px patches is 8 x 8 = 64 tokens, the CPU budget (the scan fits it "
                             "to the median short side, 16-64 px)", what="side every image is resized to")
    channels: int | None = option(None, "None: the first readable file's channel count; a file with another "
                                  "count is a bad sample", what="channel count")


@dataclass(frozen=True)
class AdapterOptions:
    """How the image adapter cuts patches."""

    patch_size: int | list[int] = option(4, "4-px patches: 8 x 8 tokens at the default 32 px (fitted with the "
                                         "image size)", what="patch side in pixels ([h, w] for a rectangle)")


def _adapter_kwargs(dataset: ImageDataset, options: dict) -> dict:
    mean, std = channel_stats(dataset)
    return {"in_chans": dataset.channels, "patch_size": pick(AdapterOptions, options).patch_size, "mean": mean,
            "std": std}


#: CPU budget of the fitted defaults: at most 8 x 8 = 64 tokens per image
MAX_SIDE_TOKENS = 8


def _size_of(entry: Entry) -> tuple[int, int, int]:
    """``(H, W, C)`` from the header (PIL) or the array (TIFF / .npy)."""
    path = entry.path
    if path.lower().endswith((".npy", ".tif", ".tiff")):
        a = read_array(path)
        return int(a.shape[0]), int(a.shape[1]), int(a.shape[2])
    from PIL import Image

    with Image.open(path) as im:
        return im.height, im.width, len(im.getbands())


def _scan(source, options: dict, explicit: set) -> tuple[dict, dict]:
    """Resolution and channels of up to 64 evenly spaced files. Fits ``image_size`` to the
    data: the median short side, at least 16 px (4 x 4 patches) and at most 64 px, with the
    patch chosen so that a side has at most 8 patches (64 tokens: the CPU budget)."""
    from omnipatch.train.plan import read_evenly

    entries = resolve(source, EXTENSIONS)
    facts: dict = {"files": len(entries)}
    sizes = [s for _, s in read_evenly(entries, _size_of, facts)]
    if not sizes:
        return facts, {}
    short = sorted(min(h, w) for h, w, _ in sizes)
    facts.update(height=f"{min(h for h, _, _ in sizes)}-{max(h for h, _, _ in sizes)}",
                 width=f"{min(w for _, w, _ in sizes)}-{max(w for _, w, _ in sizes)}",
                 channels=sorted({c for _, _, c in sizes}))
    fits = {}
    median = short[len(short) // 2]
    patch = int(options.get("patch_size") or 4) if "patch_size" in explicit else None
    if "image_size" not in explicit:
        side = min(max(median, 16), 64)
        p = patch or max(4, -(-side // MAX_SIDE_TOKENS))
        size = max(p, side // p * p)
        fits["image_size"] = (size, f"median short side {median} px; {size // p} x {size // p} patches of "
                                    f"{p} px (at most {MAX_SIDE_TOKENS} per side on a CPU budget)")
        if patch is None:
            fits["patch_size"] = (p, f"{size} px images in at most {MAX_SIDE_TOKENS} patches per side")
    return facts, fits


def _raw_pixels(sample) -> np.ndarray:
    return sample.x.float().flatten().numpy()


def _open(source, on_bad_sample: str = "raise", **options) -> ImageDataset:
    o = pick(DataOptions, options)
    return ImageDataset(source, image_size=o.image_size, channels=o.channels, on_bad_sample=on_bad_sample)


def read_mask_image(path: str) -> np.ndarray:
    """A dense label map (segmentation target) from an image file (PIL)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def _demo(out, steps: int | None = None, quiet: bool = False) -> dict:
    """``omnipatch demo`` (:func:`omnipatch.modalities.image_demo.run_demo`; imported when run)."""
    from omnipatch.modalities.image_demo import run_demo

    return run_demo(out, steps=steps, quiet=quiet)


SPEC = ModalitySpec(
    name="image",
    description="2-D images (PNG, JPEG, TIFF incl. 16-bit multi-band, .npy), any channel count",
    open_dataset=_open,
    adapter="image",
    adapter_kwargs=_adapter_kwargs,
    augment=augment,
    default_mask="random",
    data_options=DataOptions,
    adapter_options=AdapterOptions,
    scan=_scan,
    # the demo's recipe, measured on held-out digits (README, Results): a lighter mask and
    # MV-DHEL between two views (kNN 0.971 / linear 0.980 vs MAE + NT-Xent 0.958 / 0.976)
    recipe={"objectives": "mae+dhel", "model.mask_ratio": 0.5},
    raw_features=_raw_pixels,
    raw_name="pixels",
    model_options=("channels", "patch_size"),
    example=examples.image,
    example_options={"image_size": 8, "patch_size": 4},
    stream_reader=stream_reader,
    read_target=read_mask_image,
    outputs=image_out.OUTPUTS,
    demo=_demo,
)
MODALITIES.add(SPEC.name, SPEC, SPEC.description)
MODALITIES.set_default(SPEC.name)  # what `pretrain` / `omnipatch.load(init=...)` use without a modality
