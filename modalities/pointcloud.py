"""Point clouds: PLY / PCD / XYZ / PTS clouds and OBJ / STL / OFF / PLY meshes -> ``(N, C)``.

Reading goes through open3d (imported lazily): clouds with ``open3d.t.io`` (keeps normals,
colours and intensity), meshes with ``open3d.io.read_triangle_mesh`` and are sampled
uniformly on their surface (``mesh_points`` points, seeded, so a file always gives the same
cloud). A PLY file is a mesh when its header declares faces.

Sample layout: ``x (N, C)`` float32 with channels ``[xyz | normals | colours | intensity]``;
which extras are present is fixed per dataset by ``features`` (inferred from the first
readable file when not given). Colours and intensity come with normals (estimated by
open3d when a file lacks them), so ``C`` alone tells the layout: 3 xyz, 4 +intensity,
6 +normals, 7 +normals+intensity, 9 +normals+colours, 10 all. Each cloud is centred on its
centroid and scaled into the unit sphere; clouds keep their own point count (up to
``max_points``) and ``collate`` pads them, marking padding in ``x_mask (B, N)``.
"""

from __future__ import annotations

import io
import math
import os
import sys
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass

import numpy as np
import torch

from omnipatch.batch import Batch, Sample
from omnipatch.errors import BadSampleError, OmnipatchError
from omnipatch.modalities import examples, pointcloud_out
from omnipatch.modalities.base import FileDataset, stream_reader
from omnipatch.modalities.sources import Entry, resolve
from omnipatch.modality import MODALITIES, ModalitySpec
from omnipatch.options import option, pick

CLOUD_EXTENSIONS = (".ply", ".pcd", ".xyz", ".xyzn", ".xyzrgb", ".pts")
MESH_EXTENSIONS = (".obj", ".stl", ".off")
EXTENSIONS = CLOUD_EXTENSIONS + MESH_EXTENSIONS
FEATURES = ("normals", "colors", "intensity")
#: channels per extra feature, in layout order
WIDTH = {"normals": 3, "colors": 3, "intensity": 1}


def _open3d():
    try:
        import open3d as o3d
    except ImportError as e:  # missing wheel or system libusb-1.0 (see Makefile `sysdeps`)
        raise OmnipatchError(f"point clouds need open3d, which cannot be imported ({e}); "
                             "run `make venv` (installs open3d-cpu and libusb-1.0-0)") from None
    return o3d


@contextmanager
def _native_output() -> Iterator[list[str]]:
    """Capture what open3d prints (it reports read failures only as printed warnings, via
    Python's ``sys.stdout`` or the C streams); yields a list holding the text afterwards."""
    out: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    py = io.StringIO()
    with tempfile.TemporaryFile() as tmp:
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            with redirect_stdout(py), redirect_stderr(py):
                yield out
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace") + py.getvalue())


def _failure(log: str) -> str | None:
    """The first line of open3d's output that reports a failed read, cleaned of colour codes."""
    for line in log.splitlines():
        clean = line.replace("\x1b[1;33m", "").replace("\x1b[0;m", "").replace("\x1b[0m", "").strip()
        low = clean.lower()
        if "fail" in low or "error" in low or "unable" in low or low.startswith("rply"):
            return clean.replace("[Open3D WARNING] ", "").replace("[Open3D ERROR] ", "")
    return None


@dataclass
class PointData:
    """One decoded file: ``points (N, 3)`` float64 and optional ``normals (N, 3)``,
    ``colors (N, 3)`` in [0, 1], ``intensity (N, 1)``; ``is_mesh`` if sampled from a mesh."""

    points: np.ndarray
    normals: np.ndarray | None = None
    colors: np.ndarray | None = None
    intensity: np.ndarray | None = None
    is_mesh: bool = False

    def available(self) -> list[str]:
        return [f for f in FEATURES if getattr(self, f) is not None]


def _ply_has_faces(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(65536)
    header = head.split(b"end_header", 1)[0].decode("ascii", "replace")
    for line in header.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[:2] == ["element", "face"]:
            return parts[2].isdigit() and int(parts[2]) > 0
    return False


def _as_float(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "u":  # 8/16-bit colours
        return a.astype(np.float64) / float(np.iinfo(a.dtype).max)
    return a.astype(np.float64)


def read_points(path: str, mesh_points: int = 2048, seed: int = 0) -> PointData:
    """Decode a cloud or mesh file, raising :class:`BadSampleError` naming the file.

    Args:
        path: a file with one of :data:`EXTENSIONS`.
        mesh_points: points sampled uniformly on a mesh's surface.
        seed: open3d's sampling seed (meshes), so reads are reproducible.
    """
    if not os.path.isfile(path):
        raise BadSampleError(path, "file not found")
    if os.path.getsize(path) == 0:
        raise BadSampleError(path, "empty file (0 bytes)")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in EXTENSIONS:
        raise BadSampleError(path, f"unsupported extension {suffix!r} (expected one of {', '.join(EXTENSIONS)})")
    o3d = _open3d()
    mesh = suffix in MESH_EXTENSIONS or (suffix == ".ply" and _ply_has_faces(path))
    with _native_output() as log:
        if mesh:
            data = _read_mesh(o3d, path, mesh_points, seed)
        else:
            data = _read_cloud(o3d, path)
    problem = _failure(log[0])
    if problem:
        raise BadSampleError(path, f"open3d could not read it ({problem})")
    if len(data.points) == 0:
        raise BadSampleError(path, "no points (empty cloud or unreadable file)")
    if not np.isfinite(data.points).all():
        raise BadSampleError(path, "contains NaN or infinite coordinates")
    return data


def _read_cloud(o3d, path: str) -> PointData:
    pc = o3d.t.io.read_point_cloud(path)
    attrs = {k: pc.point[k].numpy() for k in pc.point}
    pts = attrs.get("positions")
    if pts is None or pts.size == 0:
        return PointData(np.zeros((0, 3)))
    inten = attrs.get("intensity", attrs.get("intensities"))
    return PointData(
        points=pts.astype(np.float64).reshape(-1, 3),
        normals=None if "normals" not in attrs else _as_float(attrs["normals"]).reshape(-1, 3),
        colors=None if "colors" not in attrs else _as_float(attrs["colors"]).reshape(-1, 3),
        intensity=None if inten is None else _as_float(inten).reshape(-1, 1),
    )


def _read_mesh(o3d, path: str, n: int, seed: int) -> PointData:
    m = o3d.io.read_triangle_mesh(path)
    if len(m.triangles) == 0:  # vertices only: a cloud in mesh clothing
        v = np.asarray(m.vertices, dtype=np.float64)
        cols = np.asarray(m.vertex_colors) if m.has_vertex_colors() else None
        nrm = np.asarray(m.vertex_normals) if m.has_vertex_normals() else None
        return PointData(v, nrm, cols)
    if not m.has_vertex_normals():
        m.compute_vertex_normals()
    o3d.utility.random.seed(seed)
    pc = m.sample_points_uniformly(number_of_points=n)
    return PointData(
        points=np.asarray(pc.points, dtype=np.float64),
        normals=np.asarray(pc.normals, dtype=np.float64) if pc.has_normals() else None,
        colors=np.asarray(pc.colors, dtype=np.float64) if pc.has_colors() else None,
        is_mesh=True,
    )


def estimate_normals(points: np.ndarray, k: int = 30) -> np.ndarray:
    """PCA normals of the ``k`` nearest neighbours (open3d), oriented away from the centroid."""
    o3d = _open3d()
    if len(points) < 3:  # no plane through fewer than three points
        return np.tile([0.0, 0.0, 1.0], (len(points), 1))
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    pc.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(min(k, len(points))))
    n = np.asarray(pc.normals, dtype=np.float64)
    flip = ((points - points.mean(0)) * n).sum(1) < 0
    n[flip] *= -1
    return n


def resolve_features(features) -> list[str]:
    """Validate and order user features; colours / intensity bring normals with them."""
    if isinstance(features, str):
        features = [f for f in features.replace("+", ",").split(",") if f.strip()]
    feats = [f.strip().lower() for f in features]
    unknown = [f for f in feats if f not in FEATURES and f != "xyz"]
    if unknown:
        raise OmnipatchError(f"unknown point feature(s) {unknown} (known: xyz, {', '.join(FEATURES)})")
    if ("colors" in feats or "intensity" in feats) and "normals" not in feats:
        feats.append("normals")  # layout rule: C identifies the channels (see module doc)
    return [f for f in FEATURES if f in feats]


def canonical_frame(pts: np.ndarray) -> np.ndarray:
    """``(3, 3)`` rotation to the cloud's principal axes (largest variance first), each axis
    signed so that the points' third moment along it is positive, the last one set to keep a
    right-handed frame: the same shape in any orientation lands in (nearly) the same pose
    (ambiguous only for shapes symmetric along an axis)."""
    c = pts - pts.mean(0)
    w, v = np.linalg.eigh(c.T @ c / max(len(c), 1))
    v = v[:, ::-1]  # descending variance
    proj = c @ v
    sign = np.sign((proj**3).sum(0))
    sign[sign == 0] = 1.0
    v = v * sign
    if np.linalg.det(v) < 0:
        v[:, 2] = -v[:, 2]
    return v


def unit_frame(points: np.ndarray, path: str, max_points: int, align: str = "none"):
    """How :func:`to_array` moves a file's points into the unit sphere: ``(keep, centre,
    frame, scale)`` (the kept subset, the centroid, the PCA rotation or None, the radius):
    ``unit = ((p - centre) @ frame) / scale``."""
    n = len(points)
    keep = slice(None)
    if n > max_points:  # reproducible subset per file
        rng = np.random.default_rng(zlib.crc32(path.encode()))
        keep = np.sort(rng.choice(n, size=max_points, replace=False))
    if align not in ALIGN:
        raise OmnipatchError(f"pointcloud option align must be one of {ALIGN}, got {align!r}")
    pts = points[keep]
    centre = pts.mean(0)
    pts = pts - centre
    frame = canonical_frame(pts) if align == "pca" else None
    if frame is not None:
        pts = pts @ frame
    return keep, centre, frame, float(np.sqrt((pts**2).sum(1)).max())


def to_array(data: PointData, features: list[str], path: str, max_points: int,
             min_points: int = 1, align: str = "none") -> np.ndarray:
    """``(N, C)`` float32: unit-sphere xyz then the requested extras (module doc layout);
    ``align="pca"`` turns xyz (and normals) into :func:`canonical_frame`."""
    n = len(data.points)
    if n < max(1, min_points):
        raise BadSampleError(path, f"has {n} points, fewer than min_points={max(1, min_points)}")
    cols = {"normals": data.normals, "colors": data.colors, "intensity": data.intensity}
    for f in ("colors", "intensity"):
        if f in features and cols[f] is None:
            raise BadSampleError(path, f"has no {f}, but the data set uses features {features} "
                                       f"(set the option features to exclude {f!r})")
    if "normals" in features and cols["normals"] is None:
        cols["normals"] = estimate_normals(data.points)
    keep, centre, frame, scale = unit_frame(data.points, path, max_points, align)
    pts = data.points[keep] - centre
    if frame is not None:
        pts = pts @ frame
    parts = [pts / scale if scale > 0 else pts]
    for f in features:
        v = cols[f][keep]
        if f == "normals":
            v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
            v = v @ frame if frame is not None else v
        parts.append(v)
    x = np.concatenate(parts, 1).astype(np.float32)
    if not np.isfinite(x).all():
        raise BadSampleError(path, "contains NaN or infinite attribute values")
    return x


ALIGN = ("none", "pca")


class PointCloudDataset(FileDataset):
    """Point clouds / meshes from a folder, glob or manifest.

    Args:
        source: folder / glob / manifest (``path``, optional ``id``, ``label``).
        max_points: clouds with more points keep a reproducible random subset of this size.
        mesh_points: points sampled on each mesh's surface.
        features: extra channels (``normals``, ``colors``, ``intensity``, as a list or a
            ``+``-joined string; ``xyz`` alone for none); None infers them from the first
            readable file. A file lacking required colours/intensity is a bad sample;
            missing normals are estimated.
        min_points: clouds with fewer points are bad samples (an empty cloud always is).
        align: ``"none"`` keeps each file's orientation; ``"pca"`` turns every cloud into its
            canonical frame (:func:`canonical_frame`), so embeddings do not depend on how a
            scan or mesh was rotated (instance retrieval of arbitrarily posed objects).
        on_bad_sample: ``raise`` or ``skip``.
    """

    def __init__(self, source, max_points: int = 2048, mesh_points: int = 2048, features=None,
                 min_points: int = 1, align: str = "none", on_bad_sample: str = "raise"):
        super().__init__(resolve(source, EXTENSIONS), on_bad_sample)
        if align not in ALIGN:
            raise OmnipatchError(f"pointcloud option align must be one of {ALIGN}, got {align!r}")
        self.align = align
        self.max_points, self.mesh_points, self.min_points = int(max_points), int(mesh_points), int(min_points)
        self.features = resolve_features(features) if features is not None else self._infer_features()
        self.channels = 3 + sum(WIDTH[f] for f in self.features)

    def _infer_features(self) -> list[str]:
        for e in self.entries[:16]:
            try:
                d = read_points(e.path, self.mesh_points)
            except BadSampleError:
                continue
            return resolve_features(d.available())
        raise OmnipatchError(f"none of the first {min(16, len(self.entries))} point files could be read "
                             f"(first: {self.entries[0].path})")

    def read(self, entry: Entry) -> Sample:
        data = read_points(entry.path, self.mesh_points)
        x = to_array(data, self.features, entry.path, self.max_points, self.min_points, self.align)
        return Sample(x=torch.from_numpy(x), id=entry.id, label=self.label_of(entry))


    def to_file_frame(self, i: int, xyz: np.ndarray) -> np.ndarray:
        """``xyz (n, 3)`` in sample ``i``'s unit-sphere frame -> the file's own coordinates."""
        entry = self.entries[i]
        points = read_points(entry.path, self.mesh_points).points
        _, centre, frame, scale = unit_frame(points, entry.path, self.max_points, self.align)
        p = np.asarray(xyz, dtype=np.float64) * (scale if scale > 0 else 1.0)
        return (p @ frame.T if frame is not None else p) + centre


def extra_stats(dataset, max_samples: int = 256) -> tuple[list[float], list[float]]:
    """Per-channel mean / std of the extra channels (beyond xyz) over valid points."""
    c = dataset.channels - 3
    if c == 0:
        return [], []
    n = len(dataset)
    idx = np.linspace(0, n - 1, num=min(n, max_samples)).round().astype(int)
    xs = [s.x[:, 3:] for s in (dataset[int(i)] for i in idx) if isinstance(s, Sample)]
    if not xs:
        raise OmnipatchError("no readable point clouds to compute normalisation statistics")
    x = torch.cat(xs, 0).double()
    return x.mean(0).tolist(), x.std(0).clamp_min(1e-6).tolist()


def _rotation(B: int, r, strength: float) -> torch.Tensor:
    """``(B, 3, 3)``: a turn about z (up to +-pi * strength) after small tilts about x, y."""
    def rot(axis: int, a: torch.Tensor) -> torch.Tensor:
        c, s = a.cos(), a.sin()
        m = torch.zeros(B, 3, 3, dtype=a.dtype, device=a.device)
        i, j = [k for k in range(3) if k != axis]
        m[:, axis, axis] = 1
        m[:, i, i], m[:, i, j], m[:, j, i], m[:, j, j] = c, -s, s, c
        return m

    tilt = math.radians(15) * strength
    return rot(2, (r(B) * 2 - 1) * math.pi * strength) @ rot(1, (r(B) * 2 - 1) * tilt) @ rot(0, (r(B) * 2 - 1) * tilt)


def augment(batch: Batch, generator: torch.Generator, strength: float = 1.0) -> Batch:
    """One random view per cloud, batched: rotation (about z, small tilts), anisotropic
    scaling (+-20 %), Gaussian jitter (sigma 0.01, clipped at 0.05) and point dropout (up to
    half the points, marked as padding in ``x_mask``; the first real point always stays).
    Normals (channels 3:6 when C >= 6) turn with the cloud."""
    x = batch.x.float()
    B, N, C = x.shape
    g, dev = generator, x.device
    r = lambda *s: torch.rand(*s, generator=g, device=g.device).to(dev)
    R = _rotation(B, r, strength)
    scale = 1 + (r(B, 1, 3) * 2 - 1) * 0.2 * strength
    xyz = (x[..., :3] @ R.transpose(1, 2)) * scale
    noise = torch.randn(B, N, 3, generator=g, device=g.device).to(dev)
    xyz = xyz + (noise * 0.01 * strength).clamp(-0.05, 0.05)
    parts = [xyz]
    if C >= 6:  # normals: rotate, then the inverse-transpose of the scaling, renormalise
        nrm = (x[..., 3:6] @ R.transpose(1, 2)) / scale
        parts += [nrm / nrm.norm(dim=-1, keepdim=True).clamp_min(1e-12), x[..., 6:]]
    else:
        parts.append(x[..., 3:])
    out = torch.cat(parts, -1)
    valid = torch.ones(B, N, dtype=torch.bool, device=dev) if batch.x_mask is None else ~batch.x_mask
    drop = r(B, N) < (r(B, 1) * 0.5 * strength)
    first = valid.long().argmax(1, keepdim=True)
    drop.scatter_(1, first, False)
    x_mask = ~valid | drop
    return batch.replace(x=out, x_mask=x_mask)


@dataclass(frozen=True)
class DataOptions:
    """How point clouds and meshes are read."""

    max_points: int = option(2048, "Point-MAE's 1,024-2,048 points per cloud; larger clouds are subsampled",
                             what="points kept per cloud")
    mesh_points: int = option(2048, "as many surface samples as a cloud keeps", what="points sampled on a mesh")
    features: str | list[str] | None = option(None, "None: the extras of the first readable file (normals, "
                                              "colours, intensity)", what="extra channels after xyz")
    min_points: int = option(1, "any non-empty cloud is a sample", what="fewest points a cloud may have")
    align: str = option("none", "clouds keep their pose; 'pca' rotates each to its principal axes",
                        what="pose alignment")


@dataclass(frozen=True)
class AdapterOptions:
    """How the point adapter groups points (Point-MAE style)."""

    num_groups: int = option(64, "Point-MAE's 64 FPS centres (the scan fits n // 16 to the smallest cloud)",
                             what="FPS group centres per cloud")
    group_size: int = option(32, "Point-MAE's 32 neighbours: groups overlap about 2x", what="kNN points per group")
    point_hidden: int = option(64, "a small mini-PointNet per group, a CPU budget", what="hidden width of the "
                               "group encoder")


def _adapter_kwargs(dataset: PointCloudDataset, options: dict) -> dict:
    mean, std = extra_stats(dataset)
    o = pick(AdapterOptions, options)
    return {"in_chans": dataset.channels, "num_groups": int(o.num_groups), "group_size": int(o.group_size),
            "hidden": int(o.point_hidden), "mean": mean, "std": std}


def _count_points(path: str, mesh_points: int) -> int:
    """Points a file gives: a PLY header's vertex count, ``mesh_points`` for a mesh, else read."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix in MESH_EXTENSIONS or (suffix == ".ply" and _ply_has_faces(path)):
        return mesh_points
    if suffix == ".ply":
        with open(path, "rb") as f:
            header = f.read(65536).split(b"end_header", 1)[0].decode("ascii", "replace")
        for line in header.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[:2] == ["element", "vertex"] and parts[2].isdigit():
                return int(parts[2])
    return len(read_points(path, mesh_points).points)


def _scan(source, options: dict, explicit: set) -> tuple[dict, dict]:
    """Points per file of up to 64 evenly spaced files. Fits the groups to the smallest
    cloud ``n`` (after ``max_points``): ``num_groups = clamp(n // 16, 4, 64)`` FPS centres and
    ``group_size = clamp(2 n / num_groups, 4, 32)`` neighbours, so groups overlap about 2x
    as in Point-MAE (1,024 points: 64 groups of 32)."""
    from omnipatch.train.plan import read_evenly

    entries = resolve(source, EXTENSIONS)
    mesh_points, cap = int(options.get("mesh_points") or 2048), int(options.get("max_points") or 2048)
    facts: dict = {"files": len(entries)}
    counts = [c for _, c in read_evenly(entries, lambda e: _count_points(e.path, mesh_points), facts)]
    if not counts:
        return facts, {}
    counts.sort()
    facts.update(points_min=counts[0], points_median=counts[len(counts) // 2], points_max=counts[-1])
    n = min(counts[0], cap)
    fits = {}
    groups = int(options.get("num_groups") or 64)
    if "num_groups" not in explicit:
        groups = int(min(64, max(4, n // 16)))
        fits["num_groups"] = (groups, f"the smallest cloud has {n} points")
    if "group_size" not in explicit:
        size = int(min(32, max(4, 2 * n // max(groups, 1))))
        fits["group_size"] = (size, f"{groups} groups over {n} points overlap about 2x")
    return facts, fits


def d2_histogram(sample, bins: int = 32, pairs: int = 4096) -> np.ndarray:
    """Osada et al.'s D2 shape distribution: a histogram of distances between random point
    pairs (xyz scaled to the unit sphere, so distances lie in [0, 2]); invariant to rotation.
    Pairs come from a fixed generator, so the feature is deterministic."""
    x = sample.x[:, :3].double().numpy()
    if sample.x_mask is not None:
        x = x[~sample.x_mask.numpy()]
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(x), pairs), rng.integers(0, len(x), pairs)
    d = np.linalg.norm(x[i] - x[j], axis=1)
    return np.histogram(d, bins=bins, range=(0.0, 2.0))[0] / pairs


def _open(source, on_bad_sample: str = "raise", **options) -> PointCloudDataset:
    o = pick(DataOptions, options)
    return PointCloudDataset(source, max_points=o.max_points, mesh_points=o.mesh_points, features=o.features,
                             min_points=o.min_points, align=o.align, on_bad_sample=on_bad_sample)


def thumbnail(sample: Sample, size: int = 64):
    """``x (N, C)`` -> a ``(size, size)`` top view (x right, y up): points per pixel."""
    xy = sample.x[:, :2].float()
    xy = (xy - xy.amin(0)) / (xy.amax(0) - xy.amin(0)).max().clamp_min(1e-8)
    ij = (xy * (size - 1)).round().long()
    img = torch.zeros(size, size)
    img.index_put_((size - 1 - ij[:, 1], ij[:, 0]), torch.ones(len(ij)), accumulate=True)
    return img.cpu().numpy()


SPEC = ModalitySpec(
    name="pointcloud",
    description="point clouds (PLY, PCD, XYZ, PTS) and meshes (OBJ, STL, OFF) via open3d",
    open_dataset=_open,
    adapter="pointcloud",
    adapter_kwargs=_adapter_kwargs,
    augment=augment,
    default_mask="random",
    data_options=DataOptions,
    adapter_options=AdapterOptions,
    scan=_scan,
    # examples/pointcloud_brain_surfaces.py: MAE + NT-Xent at half weight
    recipe={"objectives": "mae+contrastive:0.5"},
    raw_features=d2_histogram,
    raw_name="D2 shape histogram",
    model_options=("features", "point_hidden", "align"),
    thumbnail=thumbnail,
    example=examples.pointcloud,
    example_options={"max_points": 64, "num_groups": 8, "group_size": 8, "point_hidden": 16},
    stream_reader=stream_reader,
    outputs=pointcloud_out.OUTPUTS,
)
MODALITIES.add(SPEC.name, SPEC, SPEC.description)
