"""``omnipatch pretrain / embed / eval`` end to end on a tiny table and tiny point clouds."""

import csv
import json

import numpy as np
import pytest

from omnipatch.cli import main

pytestmark = pytest.mark.integration

FAST = ["--preset", "micro", "--steps", "3", "--batch-size", "8", "--quiet",
        "--set", "model.decoder_dim=32", "--set", "model.decoder_depth=1"]


def _run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def _eval(tmp_path, emb, labels, capsys) -> float:
    out = _run(["eval", "knn", "--embeddings", str(emb), "--labels", str(labels), "--k", "3", "--json"], capsys)
    return json.loads(out)["accuracy"]


def test_tabular_cli(tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    n = 24
    df = pd.DataFrame({"row": [f"r{i}" for i in range(n)], "a": rng.normal(size=n), "b": rng.normal(size=n),
                       "kind": rng.choice(["x", "y"], n), "target": ["p", "q"] * (n // 2)})
    df.loc[3, "a"] = np.nan
    df.to_parquet(tmp_path / "t.parquet", index=False)
    run = tmp_path / "run"
    out = _run(["pretrain", "--modality", "tabular", "--data", str(tmp_path / "t.parquet"), "--out", str(run),
                "--objective", "mae+contrastive:0.5", "--set", "data.options.id_column=row",
                "--set", "data.options.label_column=target", *FAST], capsys)
    assert "pretrained 3 steps" in out and (run / "reconstruction.png").is_file()
    cfg = json.loads((run / "checkpoint" / "config.json").read_text())
    kw = cfg["model"]["adapters"]["tabular"]["kwargs"]  # statistics and vocabularies travel
    assert kw["columns"] == ["a", "b", "kind"] and sorted(kw["vocab"][2]) == ["x", "y"]
    assert kw["mean"][1] == pytest.approx(df["b"].mean())
    emb = tmp_path / "emb.parquet"
    out = _run(["embed", "--checkpoint", str(run), "--data", str(tmp_path / "t.parquet"), "--out", str(emb)], capsys)
    assert "wrote 24 embeddings of width 128" in out
    assert pd.read_parquet(emb)["id"].tolist()[:2] == ["r0", "r1"]
    df[["row", "target"]].rename(columns={"row": "id", "target": "label"}).to_csv(tmp_path / "l.csv", index=False)
    assert 0.0 <= _eval(tmp_path, emb, tmp_path / "l.csv", capsys) <= 1.0


def test_pointcloud_cli(tmp_path, capsys):
    o3d = pytest.importorskip("open3d")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        if i % 2:  # boxes (meshes, sampled) and noisy spheres (clouds) of different sizes
            m = o3d.geometry.TriangleMesh.create_box(1.0, 2.0, 0.5)
            o3d.io.write_triangle_mesh(str(tmp_path / f"s{i}.off"), m)
            rows.append([f"s{i}.off", f"s{i}", "box"])
        else:
            p = rng.normal(size=(40 + 10 * i, 3))
            p /= np.linalg.norm(p, axis=1, keepdims=True)
            o3d.io.write_point_cloud(str(tmp_path / f"s{i}.xyz"), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p)))
            rows.append([f"s{i}.xyz", f"s{i}", "sphere"])
    with open(tmp_path / "m.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "id", "label"], *rows])
    run = tmp_path / "run"
    out = _run(["pretrain", "--modality", "pointcloud", "--data", str(tmp_path / "m.csv"), "--out", str(run),
                "--objective", "mae+contrastive:0.5", "--set", "data.options.features=xyz",
                "--set", "data.options.mesh_points=96", "--set", "data.options.num_groups=8",
                "--set", "data.options.group_size=8", "--set", "model.mask=spatial_block", *FAST], capsys)
    assert "pretrained 3 steps" in out and (run / "reconstruction.png").is_file()
    emb = tmp_path / "emb.parquet"
    out = _run(["embed", "--checkpoint", str(run), "--data", str(tmp_path / "m.csv"), "--out", str(emb)], capsys)
    assert "wrote 12 embeddings of width 128" in out
    with open(tmp_path / "l.csv", "w", newline="") as f:
        csv.writer(f).writerows([["id", "label"], *[[r[1], r[2]] for r in rows]])
    assert 0.0 <= _eval(tmp_path, emb, tmp_path / "l.csv", capsys) <= 1.0
