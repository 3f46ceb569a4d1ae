"""Volume embeddings as NIfTI feature maps on the input's world space.

A sample's tokens form the patch grid ``(gx, gy, gz) = roi_size / patch_size``; its map is a
4-D NIfTI ``(gx, gy, gz, D)`` (feature ``d`` is the d-th 3-D volume) whose affine is the
sample's voxel-to-world affine (the file's, through RAS orientation, resampling and the crop:
:meth:`~omnipatch.modalities.volume.VolumeDataset.sample_affine`) scaled to the patch grid:

``A_patch = A_voxel @ [[px, 0, 0, (px - 1) / 2], [0, py, 0, (py - 1) / 2], [0, 0, pz, (pz - 1) / 2], [0, 0, 0, 1]]``

so patch index ``(i, j, k)`` maps to the world position (mm) of its centre, and the map
overlays the input in any viewer. The id and the provenance are a JSON comment extension.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from omnipatch.outputs import Embeddings, Outputs, per_sample_paths


def patch_affine(voxel_affine: np.ndarray, patch_size) -> np.ndarray:
    """Voxel-to-world affine -> patch-index-to-world affine of the patch centres."""
    p = np.asarray(patch_size, dtype=np.float64)
    scale = np.eye(4)
    scale[:3, :3] = np.diag(p)
    scale[:3, 3] = (p - 1) / 2
    return np.asarray(voxel_affine, dtype=np.float64) @ scale


def label_patches(emb: Embeddings):
    """``xarray.DataArray`` ``(sample, i, j, k, feature)``: coordinates ``id`` and the world
    position of every patch centre ``x, y, z (sample, i, j, k)`` (mm, RAS); each sample's
    patch-grid affine in ``attrs["affine"]`` (N 4x4 lists)."""
    import xarray as xr

    N, _, D = emb.features.shape
    grid = tuple(emb.grid)
    ps = emb.adapter.patch_size
    aff = np.stack([patch_affine(emb.dataset.sample_affine(i), ps) for i in emb.index])
    ijk = np.stack(np.meshgrid(*[np.arange(g) for g in grid], indexing="ij"), -1).reshape(-1, 3)
    world = (np.concatenate([ijk, np.ones((len(ijk), 1))], 1) @ aff.transpose(0, 2, 1))[..., :3]  # (N, L, 3)
    world = world.reshape(N, *grid, 3)
    dims = ("sample", "i", "j", "k")
    coords = {"sample": np.arange(N), "id": ("sample", np.asarray(emb.ids, dtype=str)), "feature": np.arange(D),
              **{c: (dims, world[..., n], {"units": "mm", "long_name": f"patch centre {c} (RAS world)"})
                 for n, c in enumerate("xyz")}}
    attrs = {"long_name": "omnipatch patch embedding", "patch_size": list(ps), "affine": aff.tolist(),
             **emb.provenance}
    return xr.DataArray(emb.features.reshape(N, *grid, D).astype(np.float32), dims=[*dims, "feature"],
                        coords=coords, name="embedding", attrs=attrs)


def write_nifti(da, path: Path, provenance: dict) -> list[Path]:
    """One 4-D NIfTI per sample (``path`` for one, else numbered files and a manifest)."""
    import nibabel as nib

    ids = [str(i) for i in da["id"].values]
    files = per_sample_paths(path, ".nii.gz" if path.name.lower().endswith(".nii.gz") else ".nii", ids)
    for k, f in enumerate(files):
        aff = np.asarray(da.attrs["affine"][k], dtype=np.float64)
        img = nib.Nifti1Image(np.asarray(da.values[k], dtype=np.float32), aff)
        img.set_qform(aff, code="scanner")
        img.set_sform(aff, code="scanner")
        img.header.set_xyzt_units("mm", "unknown")  # the 4th axis is features, not time
        img.header["descrip"] = b"omnipatch patch embeddings (4th axis: feature)"
        meta = {"id": ids[k], "patch_size": list(da.attrs["patch_size"]), **provenance}
        img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", json.dumps(meta).encode()))
        nib.save(img, f)
    return files


def read_nifti_meta(path: str | Path) -> dict:
    """The id and provenance stored in a map written here."""
    import nibabel as nib

    for ext in nib.load(path).header.extensions:
        try:
            return json.loads(ext.get_content())
        except (ValueError, TypeError):
            continue
    return {}


OUTPUTS = Outputs(label_patches=label_patches, patch_writers={".nii.gz": write_nifti, ".nii": write_nifti})
