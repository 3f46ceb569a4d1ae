"""The test-only ``signal`` modality through the whole command line, with no toolkit/ edit:
pretrain, embed, finetune, export --format hf (and reload), and streaming from tar shards."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tests.plugin_signal  # noqa: F401  (registers "signal")
from omnipatch.cli import main
from tests.plugin_signal.modality import example

pytestmark = pytest.mark.integration
TINY = ["--preset", "micro", "--steps", "2", "--batch-size", "4", "--quiet", "--set", "model.decoder_dim=32"]


def _ok(args, capsys) -> str:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def test_signal_pretrain_embed_finetune_export(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    manifest = example(data)
    run = tmp_path / "run"
    _ok(["pretrain", "--modality", "signal", "--data", manifest, "--out", run, *TINY], capsys)
    assert (run / "checkpoint" / "model.safetensors").is_file()
    out = _ok(["embed", "--checkpoint", run, "--data", manifest, "--out", tmp_path / "emb.parquet"], capsys)
    assert "wrote 8 embeddings" in out
    ft = tmp_path / "ft"
    _ok(["finetune", "--checkpoint", run, "--data", manifest, "--task", "classification", "--mode", "linear",
         "--out", ft, "--epochs", "1", "--quiet"], capsys)
    assert (ft / "metrics.json").is_file()
    hf = tmp_path / "hf"
    _ok(["export", "--checkpoint", run, "--format", "hf", "--out", hf], capsys)
    from omnipatch.export.hf import OmnipatchModel

    model = OmnipatchModel.from_pretrained(str(hf)).eval()
    x = torch.randn(2, 2, 64)
    with torch.no_grad():
        assert model(x).pooler_output.shape == (2, 128)


def test_signal_streams_from_tar_shards(tmp_path, capsys):
    from omnipatch.train.shards import write_shards

    data = tmp_path / "data"
    data.mkdir()
    example(data)
    files = sorted(str(p) for p in Path(data).glob("*.npy"))
    write_shards(files, tmp_path / "shards", per_shard=4)
    run = tmp_path / "run"
    _ok(["pretrain", "--modality", "signal", "--data", f"{tmp_path}/shards/*.tar", "--out", run, *TINY], capsys)
    assert (run / "checkpoint" / "model.safetensors").is_file()
