"""Export to Hugging Face transformers: bit-equal round trip, identical embeddings and head
outputs, AutoModel registration without importing transformers up front, CLI errors; the
model card (front matter the Hub reads, and a body stating the run's own modality, data,
recipe, steps and probe figures, read back from the run directory)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

import omnipatch
from omnipatch.export import export_hf
from omnipatch.finetune import FinetuneConfig, finetune, load_finetuned
from omnipatch.train import checkpoint as ckpt
from omnipatch.train.engine import read_metrics
from tests.toolkit.test_finetune import make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("export"))


def test_round_trip_is_bit_equal_and_embeds_identically(run, tmp_path):
    from omnipatch.export.hf import OmnipatchModel

    run_dir, data = run
    out = export_hf(run_dir, tmp_path / "hf")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "omnipatch" and cfg["modality"] == "image" and cfg["hidden_size"] == 128
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    source = load_file(str(ckpt.find(run_dir) / "model.safetensors"))
    exported = load_file(str(out / "model.safetensors"))
    assert set(exported) == {k for k in source if k.startswith(("adapters.", "encoder."))}
    assert all(torch.equal(exported[k], source[k]) for k in exported)  # bit-equal on disk
    model = OmnipatchModel.from_pretrained(out).eval()
    assert all(torch.equal(v, source[k]) for k, v in model.state_dict().items())  # and after reloading
    pre = omnipatch.load(run_dir, device="cpu")
    assert torch.equal(model.adapters["image"].mean, pre.model.adapters["image"].mean)  # normalisation restored
    paths = [str(data / f"img_{i:02d}.png") for i in range(8)]
    x = torch.stack([pre.open(paths)[i].x for i in range(8)])
    _, emb = pre.embed(x, bf16=False)
    with torch.no_grad():
        out_hf = model(x)
    assert torch.equal(out_hf.pooler_output, emb)
    assert out_hf.last_hidden_state.shape == (8, 16, 128) and out_hf.logits is None
    model.save_pretrained(tmp_path / "again")  # a second round trip through transformers alone
    again = OmnipatchModel.from_pretrained(tmp_path / "again")
    assert all(torch.equal(v, source[k]) for k, v in again.state_dict().items())


def test_fine_tuned_export_carries_the_head(run, tmp_path):
    from omnipatch.export.hf import OmnipatchModel

    run_dir, data = run
    cfg = FinetuneConfig(mode="linear", epochs=2, batch_size=8, bf16=False, device="cpu")
    finetune(run_dir, data / "manifest.csv", tmp_path / "ft", data / "labels.csv", cfg, quiet=True)
    out = export_hf(tmp_path / "ft", tmp_path / "hf")
    model = OmnipatchModel.from_pretrained(out).eval()
    assert model.config.id2label == {0: "horizontal", 1: "vertical"}
    assert model.config.head["task"] == "classification"
    ft = load_finetuned(tmp_path / "ft", device="cpu")
    x = torch.stack([ft.open(data / "manifest.csv")[i].x for i in range(6)])
    from omnipatch.batch import Batch

    with torch.no_grad():
        assert torch.equal(model(x).logits, ft.model(Batch(x=x)))


def test_auto_model_after_import_hook_and_cli_stays_light(run, tmp_path):
    """In a fresh interpreter: building the CLI parser (which imports omnipatch.export) pulls in
    neither transformers nor pandas; after the hook, AutoModel.from_pretrained just works."""
    run_dir, _ = run
    out = export_hf(run_dir, tmp_path / "hf")
    code = (
        "import sys, omnipatch, omnipatch.cli, omnipatch.export\n"
        "omnipatch.cli.build_parser()\n"
        "print(sorted(m for m in ('transformers', 'pandas') if m in sys.modules))\n"
        "omnipatch.export.install_import_hook()\n"
        "from transformers import AutoConfig, AutoModel\n"
        f"m = AutoModel.from_pretrained({str(out)!r})\n"
        f"print(type(m).__name__, type(AutoConfig.from_pretrained({str(out)!r})).__name__)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    assert lines[0] == "[]", "imported at CLI start-up: " + lines[0]
    assert lines[-1] == "OmnipatchModel OmnipatchConfig"


def test_export_cli(run, tmp_path, capsys):
    from omnipatch.cli import main

    run_dir, _ = run
    assert main(["export", "--checkpoint", str(run_dir), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    assert "exported" in capsys.readouterr().out and (tmp_path / "hf" / "config.json").is_file()
    for args, message in ((["--format", "onnx"], "invalid choice"), (["--checkpoint", str(tmp_path / "none")], "no checkpoint")):
        base = {"--checkpoint": str(run_dir), "--format": "hf", "--out": str(tmp_path / "x")}
        base.update(dict(zip(args[::2], args[1::2])))
        code = main(["export"] + [t for kv in base.items() for t in kv])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], err


# -- model card ---------------------------------------------------------------------------------
def _card(path):
    text = (path / "README.md").read_text()
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


def test_pretrained_card_states_the_run(run, tmp_path):
    run_dir, data = run
    out = export_hf(run_dir, tmp_path / "hf")
    meta, body = _card(out)
    assert meta["library_name"] == "omnipatch" and meta["license"] == "apache-2.0"
    assert meta["pipeline_tag"] == "feature-extraction"
    assert {"omnipatch", "self-supervised", "image", "mae"} <= set(meta["tags"])
    cfg = ckpt.load_config(run_dir)
    assert "- modality: image" in body and f"- source: `{data / 'manifest.csv'}`" in body
    assert '- options: `{"image_size": 16, "patch_size": 4}`' in body
    assert "- objectives: mae (weight 1)" in body
    mask = cfg["model"]["masks"]["image"]
    assert f"- mask: {mask['strategy']}, ratio {mask['ratio']}" in body
    assert f"- augmentation strength: {cfg['run']['data']['augment_strength']:g}" in body
    last = read_metrics(run_dir / "metrics.jsonl")[-1]
    assert f"- steps: {last['step']}; batch size 8" in body and f"final training loss: {last['loss']:.4g}" in body
    report = json.loads((run_dir / "report.json").read_text())
    for name, v in report["probes"].items():  # the figures are the report's own
        assert f"| {name} | {v['linear']:.3f} | {v['knn']:.3f} |" in body
    assert report["verdict"] in body and ckpt.content_hash(run_dir) in body
    assert f"rankme {report['health']['rankme']:.4g}" in body and "--license ID" in body
    for pic in ("loss_curve.png", "report_map.png"):  # copied beside the card and shown in it
        assert (out / pic).read_bytes() == (run_dir / pic).read_bytes() and f"]({pic})" in body


def test_card_parses_with_huggingface_hub(run, tmp_path):
    hub = pytest.importorskip("huggingface_hub")
    run_dir, _ = run
    out = export_hf(run_dir, tmp_path / "hf", license="mit")
    card = hub.ModelCard.load(out / "README.md")
    assert card.data.library_name == "omnipatch" and card.data.license == "mit"
    assert "mae" in card.data.tags and card.data.pipeline_tag == "feature-extraction"
    assert "## Recipe" in card.text and "## Evaluation" in card.text and "License: `mit`." in card.text


def test_card_without_report_says_how_to_measure(run, tmp_path):
    run_dir, _ = run
    bare = tmp_path / "bare"
    shutil.copytree(run_dir / ckpt.CKPT, bare / ckpt.CKPT)  # weights only: no metrics, no report
    _, body = _card(export_hf(bare, tmp_path / "hf"))
    assert "- steps: unknown" in body and "Not measured: `omnipatch report" in body
    assert "final training loss" not in body and "![" not in body


def test_cli_license_and_fine_tuned_card(run, tmp_path, capsys):
    from omnipatch.cli import main

    run_dir, data = run
    cfg = FinetuneConfig(mode="linear", epochs=2, batch_size=8, bf16=False, device="cpu")
    res = finetune(run_dir, data / "manifest.csv", tmp_path / "ft", data / "labels.csv", cfg, quiet=True)
    assert main(["export", "--checkpoint", str(tmp_path / "ft"), "--out", str(tmp_path / "hf"),
                 "--license", "cc-by-4.0"]) == 0
    assert "model card README.md" in capsys.readouterr().out
    meta, body = _card(tmp_path / "hf")
    assert meta["license"] == "cc-by-4.0" and "pipeline_tag" not in meta
    assert {"classification", "fine-tuned", "image"} <= set(meta["tags"])
    assert "# omnipatch fine-tuned classification model (image)" in body
    assert f"{res['epochs_run']} of 2 epochs (best {res['best_epoch']})" in body
    assert f"pretrained from `{run_dir}`" in body
    for split in ("train", "val"):
        for k, v in res[split].items():
            assert f"| {split} | {k} | {v:.4g} |" in body
    last = read_metrics(run_dir / "metrics.jsonl")[-1]  # the pretraining steps behind the encoder
    assert f"- steps: {last['step']};" in body
