"""Paired (cross-modal) pretraining, index, query and evaluation through the CLI."""

import csv
import json

import numpy as np
import pytest

from omnipatch.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def paired_manifest(tmp_path):
    """12 pairs: a PNG with k bright bars <-> a WAV tone of pitch k; label k in {0,1,2}.
    Two rows miss one side (still used for that side's MAE)."""
    import soundfile as sf
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        k = i % 3
        img = (rng.random((16, 16)) * 40).astype(np.uint8)
        img[:, 2 + 4 * k: 5 + 4 * k] = 255
        Image.fromarray(img).save(tmp_path / f"im{i}.png")
        t = np.arange(8000) / 16000
        sf.write(tmp_path / f"au{i}.wav", 0.5 * np.sin(2 * np.pi * (300 + 400 * k) * t) + 0.01 * rng.standard_normal(8000), 16000)
        rows.append({"image": f"im{i}.png", "audio": f"au{i}.wav", "pair_id": f"p{i}", "label": k})
    rows.append({"image": "im0.png", "audio": "", "pair_id": "only_image", "label": 0})
    rows.append({"image": "", "audio": "au1.wav", "pair_id": "only_audio", "label": 1})
    path = tmp_path / "pairs.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "audio", "pair_id", "label"])
        w.writeheader()
        w.writerows(rows)
    return path


def test_paired_pretrain_index_query_eval(paired_manifest, tmp_path, capsys):
    run = tmp_path / "run"
    opts = json.dumps({"image": {"image_size": 16, "patch_size": 4, "channels": 1},
                       "audio": {"seconds": 0.5, "n_mels": 16}})
    code = main(["pretrain", "--modality", "image,audio", "--data", str(paired_manifest), "--out", str(run),
                 "--preset", "micro", "--steps", "3", "--batch-size", "6", "--objective", "mae", "--quiet",
                 "--set", f"data.options={opts}", "--set", "model.decoder_dim=32"])
    out = capsys.readouterr()
    assert code == 0, out.err
    rec = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"image/mae", "audio/mae", "cross", "loss"} <= set(rec[-1])
    assert (run / "reconstruction_image.png").is_file() and (run / "reconstruction_audio.png").is_file()

    imgs = tmp_path / "imgs.csv"
    imgs.write_text("path,id,label\n" + "".join(f"im{i}.png,im{i},{i % 3}\n" for i in range(12)))
    auds = tmp_path / "auds.csv"
    auds.write_text("path,id,label\n" + "".join(f"au{i}.wav,au{i},{i % 3}\n" for i in range(12)))
    assert main(["retrieve", "index", "--checkpoint", str(run), "--modality", "image", "--data", str(imgs),
                 "--out", str(tmp_path / "ix")]) == 0
    assert main(["retrieve", "query", "--index", str(tmp_path / "ix"), "--modality", "audio", "--data", str(auds),
                 "--k", "3", "--out", str(tmp_path / "res.csv"), "--plot", str(tmp_path / "top.png"),
                 "--plot-queries", "4"]) == 0
    from PIL import Image

    w, h = Image.open(tmp_path / "top.png").size  # 4 query rows x (query + top 3) columns
    assert w / h == pytest.approx((1.5 * 4) / (1.6 * 4), rel=0.05)
    res = list(csv.DictReader(open(tmp_path / "res.csv")))
    assert len(res) == 12 * 3 and {r["query"] for r in res} == {f"au{i}" for i in range(12)}
    assert all(r["id"].startswith("im") for r in res)
    meta = json.loads((tmp_path / "ix" / "index.json").read_text())
    assert meta["data"] == str(imgs.resolve())
    del meta["data"]  # an index without its source cannot draw results
    (tmp_path / "ix" / "index.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["retrieve", "query", "--index", str(tmp_path / "ix"), "--modality", "audio", "--data", str(auds),
                 "--out", str(tmp_path / "res2.csv"), "--plot", str(tmp_path / "top2.png")]) == 2
    assert "does not record its data source" in capsys.readouterr().err
    assert main(["retrieve", "eval", "--checkpoint", str(run), "--data", str(paired_manifest),
                 "--relevance", "label"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    for direction in ("image->audio", "audio->image"):
        assert 0.0 <= metrics[direction]["recall@1"] <= 1.0 and metrics[direction]["queries"] == 13

    # the HF export keeps the shared space: AutoModel gives the same cross-modal embeddings
    import torch

    import omnipatch
    from omnipatch.export import export_hf
    from omnipatch.export.hf import OmnipatchModel

    hf = OmnipatchModel.from_pretrained(export_hf(run, tmp_path / "hf")).eval()
    pre = omnipatch.load(run, device="cpu")
    for m, csv_path in (("image", imgs), ("audio", auds)):
        ds = pre.open(csv_path, modality=m)
        x = torch.stack([ds[i].x for i in range(4)])
        _, want = pre.embed(x, modality=m, space="cross", bf16=False)
        with torch.no_grad():
            got = hf(x, modality=m).cross_embeds
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_paired_manifest_errors(paired_manifest, tmp_path, capsys):
    code = main(["pretrain", "--modality", "image,video", "--data", str(paired_manifest), "--out",
                 str(tmp_path / "r"), "--steps", "1"])
    assert code == 2 and "no column for modality ['video']" in capsys.readouterr().err


def test_paired_dataset_reads_each_file_once(paired_manifest):
    from omnipatch.modality import MODALITIES, load_builtin
    from omnipatch.train.build import open_data
    from omnipatch.train.paired import PairedDataset

    load_builtin()
    opts = {"image": {"image_size": 16, "channels": 1}, "audio": {"seconds": 0.5, "n_mels": 16}}
    ds = PairedDataset(paired_manifest, lambda m, p: open_data(MODALITIES.get(m), p, opts[m]), ["image", "audio"])
    assert len(ds) == 14 and len(ds.datasets["image"]) == 12  # im0.png is named by two rows
    assert ds.index["image"][0] == ds.index["image"][12] and ds.index["image"][13] == -1
    ds.cache()
    a, b = ds[0]["image"], ds[12]["image"]
    assert a is b and ds[13]["image"] is None  # decoded once, shared by both rows


def test_separate_encoders_pretrain_embed_and_export(paired_manifest, tmp_path, capsys):
    import torch

    import omnipatch
    from omnipatch.export import export_hf
    from omnipatch.export.hf import OmnipatchModel

    run = tmp_path / "run"
    opts = json.dumps({"image": {"image_size": 16, "patch_size": 4, "channels": 1},
                       "audio": {"seconds": 0.5, "n_mels": 16}})
    assert main(["pretrain", "--modality", "image,audio", "--data", str(paired_manifest), "--out", str(run),
                 "--preset", "micro", "--steps", "2", "--batch-size", "6", "--objective", "mae", "--quiet",
                 "--set", f"data.options={opts}", "--set", "model.decoder_dim=32",
                 "--set", "model.separate_encoders=true"]) == 0, capsys.readouterr().err
    pre = omnipatch.load(run, device="cpu")
    assert pre.model.separate_encoders and set(pre.model.encoders) == {"image", "audio"}
    x = torch.stack([pre.open([str(tmp_path / f"im{i}.png") for i in range(4)], modality="image")[i].x
                     for i in range(4)])
    _, emb = pre.embed(x, modality="image", bf16=False)
    out = export_hf(run, tmp_path / "hf")  # the first modality's adapter + its own encoder
    hf = OmnipatchModel.from_pretrained(out).eval()
    assert list(hf.adapters) == ["image"]
    with torch.no_grad():
        torch.testing.assert_close(hf(x).pooler_output, emb, rtol=1e-5, atol=1e-5)
