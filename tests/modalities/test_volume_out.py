"""Volume embeddings as NIfTI feature maps: the map's affine puts every patch centre on the
input's world coordinates (checked with nibabel, through orientation and crops)."""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest

from omnipatch.modalities.volume_out import read_nifti_meta
from omnipatch.modality import MODALITIES
from omnipatch.outputs import write
from tests.modalities.tiny_run import tiny_run, tokens_of

#: not RAS: axes permuted and flipped, anisotropic voxels, an offset origin
AFFINE = np.array([[0.0, 0.0, -1.5, 40.0], [-2.0, 0.0, 0.0, 12.0], [0.0, 1.2, 0.0, -30.0], [0.0, 0.0, 0.0, 1.0]])
OPTS = {"patch_size": 4, "intensity": "none", "foreground_crop": False}


def _volume(tmp_path, name: str, shape, seed: int = 0) -> tuple[str, np.ndarray]:
    data = np.random.default_rng(seed).random(shape).astype(np.float32) + 1.0
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, AFFINE), path)
    return str(path), data


def _world_of_input_voxel(ijk) -> np.ndarray:
    return (AFFINE @ np.r_[np.asarray(ijk, float), 1.0])[:3]


@pytest.mark.parametrize("crop,shape", [("center", (8, 8, 8)), ("random", (12, 10, 14))])
def test_sample_affine_maps_each_voxel_onto_the_input(tmp_path, crop, shape):
    """Every voxel of the model's input crop sits where the file has the same value."""
    path, data = _volume(tmp_path, "v.nii.gz", shape)
    spec = MODALITIES.get("volume")
    ds = spec.open_dataset(path, **{**spec.options, **OPTS, "roi_size": [8, 8, 8], "crop": crop})
    x, aff = ds[0].x[0].numpy(), ds.sample_affine(0)
    inv = np.linalg.inv(AFFINE)
    for v in itertools.product(range(8), repeat=3):
        u = (inv @ aff @ np.r_[np.asarray(v, float), 1.0])[:3]
        np.testing.assert_allclose(u, np.round(u), atol=1e-6)
        assert x[v] == data[tuple(np.round(u).astype(int))]


def test_nifti_map_affine_puts_patch_centres_on_the_inputs_world(tmp_path):
    path, _ = _volume(tmp_path, "v.nii.gz", (8, 8, 8))
    spec = MODALITIES.get("volume")
    opts = {**OPTS, "roi_size": [8, 8, 8], "crop": "center"}
    ds = spec.open_dataset(path, **{**spec.options, **opts})
    pre = tiny_run("volume", ds, opts)
    out = tmp_path / "map.nii.gz"
    assert write(spec, pre.embeddings(ds, "patch", bf16=False), out) == [out]
    img = nib.load(out)
    assert img.shape == (2, 2, 2, 32)
    inv = np.linalg.inv(AFFINE)
    seen = set()
    for ijk in itertools.product(range(2), repeat=3):
        world = nib.affines.apply_affine(img.affine, ijk)
        u = nib.affines.apply_affine(inv, world)  # input voxel coordinates of the patch centre
        # a patch of 4 voxels is centred between its 2nd and 3rd voxel: 1.5 or 5.5 in the file
        b = (u - 1.5) / 4.0
        np.testing.assert_allclose(b, np.round(b), atol=1e-5)  # NIfTI stores the affine in float32
        block = tuple(int(c) for c in np.round(b))
        # the patch's voxels in the file, mapped to world, have their mean on the map's centre
        corner = [b * 4 for b in block]
        cube = [_world_of_input_voxel(np.add(corner, d)) for d in itertools.product(range(4), repeat=3)]
        np.testing.assert_allclose(np.mean(cube, 0), world, atol=1e-4)
        seen.add(block)
    assert seen == set(itertools.product(range(2), repeat=3))  # the 8 patches cover the 8 blocks of the input
    # the map's values are the encoder's tokens of that sample, in grid order
    _, enc = tokens_of(pre, ds, 0)
    np.testing.assert_allclose(np.asarray(img.dataobj).reshape(8, 32), enc.numpy(), atol=1e-4)
    meta = read_nifti_meta(out)
    assert meta["id"] == ds[0].id and meta["level"] == "patch" and len(meta["config_hash"]) == 64


def test_several_volumes_get_numbered_maps_and_a_manifest(tmp_path):
    import pandas as pd

    paths = [_volume(tmp_path, f"v{k}.nii.gz", (8, 8, 8), seed=k)[0] for k in range(3)]
    spec = MODALITIES.get("volume")
    opts = {**OPTS, "roi_size": [8, 8, 8], "crop": "center"}
    ds = spec.open_dataset(paths, **{**spec.options, **opts})
    files = write(spec, tiny_run("volume", ds, opts).embeddings(ds, "patch"), tmp_path / "out" / "m.nii.gz")
    manifest = pd.read_csv(tmp_path / "out" / "m.csv")
    assert [f.name for f in files] == list(manifest["path"]) == ["m_0000.nii.gz", "m_0001.nii.gz", "m_0002.nii.gz"]
    assert list(manifest["id"]) == [ds[i].id for i in range(3)]
    assert [read_nifti_meta(f)["id"] for f in files] == list(manifest["id"])
