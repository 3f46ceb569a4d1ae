"""A stranger's small data through the defaults: ``pretrain`` -> ``embed`` -> ``eval`` with no
option beyond ``--modality/--data/--out`` (``--steps 2 --preset micro --quiet`` only keep the
test fast), for images, point clouds, climate grids and tables; the scan's fits in
``plan.json``; one CLI for every command (the data flags of ``pretrain`` on ``embed``)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest

from omnipatch.cli import main
from tests.modalities.cli_flow import FAST

pytestmark = pytest.mark.integration


def _ok(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def _embed_eval(run, data, tmp_path, capsys, n, extra=()):
    emb = tmp_path / "emb.parquet"
    out = _ok(["embed", "--checkpoint", str(run), "--data", str(data), "--out", str(emb), *extra], capsys)
    assert f"wrote {n} embeddings" in out
    ids = pd.read_parquet(emb)["id"].tolist()
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"{i},{k % 2}\n" for k, i in enumerate(ids)))
    res = json.loads(_ok(["eval", "knn", "--embeddings", str(emb), "--labels", str(labels), "--json"], capsys))
    assert 0.0 <= res["accuracy"] <= 1.0
    return ids


def _plan(run):
    return json.loads((run / "plan.json").read_text())


def test_images_fewer_than_the_batch_at_their_own_resolution(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for i in range(20):  # 20 images of 8x8: fewer than the default batch of 128
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / f"im{i}.png")
        rows.append(f"im{i}.png,im{i},{i % 2}\n")
    (tmp_path / "m.csv").write_text("path,id,label\n" + "".join(rows))
    run = tmp_path / "run"
    _ok(["pretrain", "--modality", "image", "--data", str(tmp_path / "m.csv"), "--out", str(run), *FAST], capsys)
    plan = _plan(run)
    assert plan["fits"]["train.batch_size"]["value"] == 20
    assert plan["fits"]["image_size"]["value"] == 16 and plan["facts"]["height"] == "8-8"
    saved = json.loads((run / "checkpoint" / "config.json").read_text())["run"]
    assert saved["data"]["options"]["image_size"] == 16 and saved["train"]["batch_size"] == 20
    # the manifest has labels: the run ends with the report
    rep = json.loads((run / "report.json").read_text())
    assert (run / "report.md").is_file() and set(rep["probes"]) == {"pretrained", "random init",
                                                                    "raw features (pixels)"}
    _embed_eval(run, tmp_path / "m.csv", tmp_path, capsys, 20)


def test_explicit_batch_size_that_cannot_work_is_one_line(tmp_path, capsys, png_folder):
    code = main(["pretrain", "--modality", "image", "--data", str(png_folder / "manifest.csv"), "--out",
                 str(tmp_path / "r"), "--batch-size", "64", *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "fewer than batch_size" in err and len(err.strip().splitlines()) == 1


def test_large_images_get_a_larger_patch(tmp_path):
    from PIL import Image

    from omnipatch.modality import MODALITIES, load_builtin
    from omnipatch.train.plan import scan

    load_builtin()
    for i in range(3):
        Image.new("RGB", (300, 200)).save(tmp_path / f"{i}.jpg")
    plan = scan(MODALITIES.get("image"), str(tmp_path), {})
    assert plan.options() == {"image_size": 64, "patch_size": 8}
    assert scan(MODALITIES.get("image"), str(tmp_path), {"image_size": 32}).options() == {}  # explicit wins


def _mesh_folder(root, n=16):
    import open3d as o3d

    root.mkdir()
    for i in range(n):
        m = (o3d.geometry.TriangleMesh.create_box(1 + i % 3, 1, 0.5) if i % 2 else
             o3d.geometry.TriangleMesh.create_sphere(0.5 + 0.1 * (i % 4), resolution=8))
        o3d.io.write_triangle_mesh(str(root / f"m{i:02d}.off"), m)
    return root


def test_sixteen_meshes(tmp_path, capsys):
    pytest.importorskip("open3d")
    data = _mesh_folder(tmp_path / "meshes")
    run = tmp_path / "run"
    _ok(["pretrain", "--modality", "pointcloud", "--data", str(data), "--out", str(run), *FAST], capsys)
    assert _plan(run)["fits"]["train.batch_size"]["value"] == 16
    _embed_eval(run, data, tmp_path, capsys, 16)


def test_small_clouds_fit_the_groups(tmp_path, capsys):
    pytest.importorskip("open3d")
    import open3d as o3d

    rng = np.random.default_rng(0)
    for i in range(6):  # 100-point clouds: 64 groups of 32 cannot be drawn from them
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(rng.normal(size=(100 + i, 3))))
        o3d.io.write_point_cloud(str(tmp_path / f"c{i}.ply"), pc)
    run = tmp_path / "run"
    _ok(["pretrain", "--modality", "pointcloud", "--data", str(tmp_path), "--out", str(run), *FAST], capsys)
    fits = _plan(run)["fits"]
    assert fits["num_groups"]["value"] == 6 and "group_size" not in fits  # 2 x 100 // 6 > 32: the default fits
    assert _plan(run)["facts"]["points_min"] == 100


def test_d2_histogram_is_rotation_invariant():
    import torch

    from omnipatch.batch import Sample
    from omnipatch.modalities.pointcloud import d2_histogram

    x = torch.randn(500, 3)
    x = x / x.norm(dim=1).max()
    q, _ = torch.linalg.qr(torch.randn(3, 3))
    h1, h2 = d2_histogram(Sample(x=x, id="a")), d2_histogram(Sample(x=x @ q.T, id="b"))
    assert h1.shape == (32,) and abs(h1.sum() - 1) < 1e-9
    np.testing.assert_allclose(h1, h2, atol=1e-6)


def _climate(path, T=8, H=73, W=144):
    import xarray as xr

    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {v: (("time", "lat", "lon"), rng.normal(size=(T, H, W)).astype(np.float32)) for v in ("u", "v")},
        coords={"time": pd.date_range("2000-01-01", periods=T, freq="MS"), "lat": np.linspace(90, -90, H),
                "lon": np.linspace(0, 357.5, W)})
    ds.to_netcdf(path)
    return path


def test_climate_eight_steps_on_a_large_grid(tmp_path, capsys):
    data = _climate(tmp_path / "wind.nc")
    run = tmp_path / "run"
    _ok(["pretrain", "--modality", "climate", "--data", str(data), "--out", str(run), *FAST], capsys)
    fits = _plan(run)["fits"]
    assert fits["train.batch_size"]["value"] == 8
    p = fits["patch_size"]["value"]
    assert 2 * -(-73 // p) * -(-144 // p) <= 256 < 2 * -(-73 // (p - 1)) * -(-144 // (p - 1))
    ids = _embed_eval(run, data, tmp_path, capsys, 8, extra=["--variables", "u,v"])  # pretrain's flag, same value
    assert ids[0].startswith("2000-01-01")
    code = main(["embed", "--checkpoint", str(run), "--data", str(data), "--out", str(tmp_path / "x.parquet"),
                 "--variables", "v,u"])
    err = capsys.readouterr().err
    assert code == 2 and "'variables'" in err and "differs from the checkpoint" in err


def test_table_of_fifty_rows_with_missing_cells(tmp_path, capsys):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(50, 5)), columns=list("abcde"))
    df[df > 1.2] = np.nan  # about 12 % missing
    df.insert(0, "id", [f"r{i}" for i in range(50)])
    df["label"] = rng.integers(0, 2, 50)
    df.to_csv(tmp_path / "t.csv", index=False)
    run = tmp_path / "run"
    _ok(["pretrain", "--modality", "tabular", "--data", str(tmp_path / "t.csv"), "--out", str(run), *FAST], capsys)
    plan = _plan(run)
    assert plan["fits"]["id_column"]["value"] == "id" and plan["fits"]["label_column"]["value"] == "label"
    assert plan["facts"]["features"] == 5 and plan["facts"]["rows"] == 50
    assert (run / "report.md").is_file()  # the label column gives labels
    # the flags pretrain takes, embed takes (the bug: "unrecognized arguments")
    ids = _embed_eval(run, tmp_path / "t.csv", tmp_path, capsys, 50,
                      extra=["--id-column", "id", "--label-column", "label"])
    assert ids[:2] == ["r0", "r1"]
    out = _ok(["finetune", "--checkpoint", str(run), "--data", str(tmp_path / "t.csv"), "--id-column", "id",
               "--label-column", "label", "--mode", "linear", "--epochs", "1", "--out", str(tmp_path / "ft"),
               "--quiet"], capsys)
    assert "fine-tuned (classification, linear)" in out
    code = main(["finetune", "--checkpoint", str(run), "--data", str(tmp_path / "t.csv"), "--out",
                 str(tmp_path / "ft2"), "--set", "data.options.columns=a,b"])
    err = capsys.readouterr().err
    assert code == 2 and "'columns'" in err and "differs from the checkpoint" in err


def test_steps_zero_writes_the_initial_checkpoint(tmp_path, capsys, png_folder):
    run = tmp_path / "run"
    out = _ok(["pretrain", "--modality", "image", "--data", str(png_folder / "manifest.csv"), "--out", str(run),
               "--steps", "0", "--preset", "micro", "--quiet"], capsys)
    assert "initial (random-init) checkpoint" in out and (run / "checkpoint" / "model.safetensors").is_file()
    from omnipatch.api import load

    a = load(run).model.state_dict()
    b = load(run, random_init=True).model.state_dict()  # same seed: the run's initial weights
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_inspect_prints_the_plan(tmp_path, capsys):
    data = _climate(tmp_path / "w.nc", T=3, H=10, W=12)
    out = _ok(["inspect", str(data), "--modality", "climate"], capsys)
    assert "time_steps 3" in out and "grid 10 x 12" in out and "plan: variables = ['u', 'v']" in out
    assert main(["inspect", str(data), "--modality", "climate", "--option", "window=5"]) == 2  # explicit: kept
    assert "3 time steps, fewer than window=5" in capsys.readouterr().err
    out = _ok(["inspect", str(data), "--modality", "climate", "--json"], capsys)
    assert json.loads(out)["fits"]["train.batch_size"]["value"] == 3


def test_budget_sizes_the_steps(tmp_path, capsys, png_folder):
    run = tmp_path / "run"
    _ok(["pretrain", "--modality", "image", "--data", str(png_folder / "manifest.csv"), "--out", str(run),
         "--budget", "4s", "--preset", "micro", "--quiet", "--set", "model.decoder_dim=32"], capsys)
    saved = json.loads((run / "checkpoint" / "config.json").read_text())["run"]["train"]
    rec = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert saved["budget"] == 0.0 and saved["steps"] >= 6 and rec[-1]["step"] == saved["steps"]


def test_report_command_with_a_labels_file_and_groups(tmp_path, capsys, png_folder):
    run = tmp_path / "run"
    _ok(["pretrain", "--modality", "image", "--data", str(png_folder / "manifest.csv"), "--out", str(run),
         *FAST], capsys)
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "label", "group"])
        w.writerows([f"id{i}", i % 2, f"g{i // 4}"] for i in range(24))
    out = _ok(["report", str(run), "--labels", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "rep")],
              capsys)
    assert "did pretraining help?" in out
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert rep["split"].startswith("held-out groups") and rep["n_train"] + rep["n_test"] == 24


def test_every_recipe_applies_and_names_registered_objectives():
    from omnipatch.config import Config, apply_keys
    from omnipatch.modality import MODALITIES, load_builtin
    from omnipatch.objectives import OBJECTIVES

    load_builtin()
    for name in MODALITIES:
        spec = MODALITIES.get(name)
        cfg = apply_keys(Config(), spec.recipe)
        assert spec.recipe, f"{name} declares no recipe"
        for obj in cfg.objectives:
            OBJECTIVES.get(obj)
        assert set(spec.model_options) <= set(spec.options) | {"patch_size"}, name


def test_the_cli_applies_the_recipe_under_the_users_flags(tmp_path, capsys, png_folder):
    def saved(run):
        return json.loads((run / "checkpoint" / "config.json").read_text())["run"]

    run = tmp_path / "a"
    out = _ok(["pretrain", "--modality", "image", "--data", str(png_folder / "manifest.csv"), "--out", str(run),
               "--steps", "1", "--preset", "micro"], capsys)
    assert "recipe for image" in out
    cfg = saved(run)
    assert cfg["objectives"] == {"mae": {"weight": 1.0}, "dhel": {"weight": 1.0}}
    assert cfg["model"]["mask_ratio"] == 0.5
    run = tmp_path / "b"
    _ok(["pretrain", "--modality", "image", "--data", str(png_folder / "manifest.csv"), "--out", str(run),
         "--steps", "1", "--preset", "micro", "--objective", "mae", "--set", "model.mask_ratio=0.6", "--quiet"],
        capsys)
    assert saved(run)["objectives"] == {"mae": {"weight": 1.0}} and saved(run)["model"]["mask_ratio"] == 0.6
