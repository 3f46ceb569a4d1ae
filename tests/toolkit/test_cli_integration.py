"""The command line end to end on tiny real PNGs, and its error contract (one line, exit 2)."""

import json
import subprocess
import sys

import pytest

from omnipatch.cli import main

pytestmark = pytest.mark.integration


def _run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("args, message", [
    (["pretrain", "--modality", "imag", "--data", "x", "--out", "o"], "did you mean 'image'"),
    (["pretrain", "--modality", "image", "--data", "/no/such/dir", "--out", "o"], "no such file or folder"),
    (["pretrain", "--data", "x", "--out", "o", "--set", "train.stepz=3"], "did you mean 'train.steps'"),
    (["pretrain", "--data", "x", "--out", "o", "--objective", "maee"], "unknown objective 'maee'"),
    (["embed", "--checkpoint", "/no/run", "--data", "x", "--out", "e.parquet"], "no checkpoint"),
    (["eval", "knn", "--embeddings", "/no/e.parquet", "--labels", "/no/l.csv"], "labels file not found"),
    (["frobnicate"], "invalid choice"),
])
def test_user_errors_are_one_line_exit_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("omnipatch: error:") and message in lines[0], err
    assert "Traceback" not in err


def test_pretrain_embed_eval_end_to_end(png_folder, tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = _run(["pretrain", "--modality", "image", "--data", str(png_folder / "manifest.csv"),
                           "--out", str(run), "--preset", "micro", "--steps", "4", "--batch-size", "8",
                           "--set", "data.options.image_size=16", "--set", "model.decoder_dim=32",
                           "--objective", "mae+contrastive:0.5", "--quiet"], capsys)
    assert code == 0, err
    assert "pretrained 4 steps" in out
    for f in ("checkpoint/model.safetensors", "checkpoint/config.json", "metrics.jsonl", "loss_curve.png",
              "reconstruction.png"):
        assert (run / f).is_file(), f
    rec = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"mae", "contrastive", "loss"} <= set(rec[-1])
    emb = tmp_path / "emb.parquet"
    code, out, err = _run(["embed", "--checkpoint", str(run), "--data", str(png_folder / "manifest.csv"),
                           "--out", str(emb)], capsys)
    assert code == 0 and "wrote 24 embeddings of width 128" in out, err
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"id{i},{i % 2}\n" for i in range(24)))
    code, out, err = _run(["eval", "knn", "--embeddings", str(emb), "--labels", str(labels), "--json"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert 0.0 <= res["accuracy"] <= 1.0 and (tmp_path / "emb.map.png").is_file()


def test_skip_bad_samples_writes_report(png_folder, tmp_path, capsys):
    (png_folder / "broken.png").write_bytes(b"not a png")
    run = tmp_path / "run"
    code, _, err = _run(["pretrain", "--data", str(png_folder), "--out", str(run), "--preset", "micro",
                         "--steps", "6", "--batch-size", "8", "--on-bad-sample", "skip", "--quiet",
                         "--set", "data.options.image_size=16", "--set", "model.decoder_dim=32"], capsys)
    assert code == 0, err
    skipped = [json.loads(x) for x in (run / "skipped.jsonl").read_text().splitlines()]
    assert skipped and all("broken.png" in s["source"] for s in skipped)
    code, _, err = _run(["pretrain", "--data", str(png_folder), "--out", str(tmp_path / "r2"), "--preset",
                         "micro", "--steps", "3", "--batch-size", "8", "--quiet",
                         "--set", "data.options.image_size=16"], capsys)
    assert code == 2 and "broken.png" in err


def test_list_and_module_entry():
    out = subprocess.run([sys.executable, "-m", "omnipatch", "list"], capture_output=True, text=True, check=True).stdout
    assert "image" in out and "mae" in out and "contrastive" in out and "tiny" in out


def test_eval_cross_validation_needs_two_per_label(tmp_path, capsys):
    from omnipatch.api import write_embeddings

    write_embeddings(tmp_path / "e.parquet", ["a", "b", "c"], [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    (tmp_path / "l.csv").write_text("id,label\na,x\nb,y\nc,y\n")
    code, _, err = _run(["eval", "knn", "--embeddings", str(tmp_path / "e.parquet"), "--labels",
                         str(tmp_path / "l.csv")], capsys)
    assert code == 2 and "at least 2 samples of every label" in err


def test_data_option_flags_reach_the_config(monkeypatch, tmp_path, capsys):
    import omnipatch.train.pretrain as pt

    seen = {}
    monkeypatch.setattr(pt, "pretrain", lambda cfg, out, **kw: seen.update(cfg=cfg) or
                        {"steps": 0, "last": {}, "run_dir": str(out)})
    code, _, err = _run(["pretrain", "--modality", "climate", "--data", "x.nc", "--out", str(tmp_path),
                         "--variables", "tas, pr", "--levels", "500,850"], capsys)
    assert code == 0, err
    assert seen["cfg"].data.options == {"variables": ["tas", "pr"], "levels": [500.0, 850.0]}
