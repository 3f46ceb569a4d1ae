"""Every numeric option is checked once, at the config layer: one line naming the key and its range."""

from __future__ import annotations

import pytest

BAD_SETS = [
    ("train.batch_size=-4", "train.batch_size must be >= 0, got -4"),
    ("train.batch_size=1", "train.batch_size must be 0 (fit to the data) or at least 2, got 1"),
    ("train.steps=-1", "train.steps must be >= 0"),
    ("train.epochs=-2", "train.epochs must be >= 0"),
    ("train.grad_accum=0", "train.grad_accum must be >= 1"),
    ("train.grad_accum=-3", "train.grad_accum must be >= 1"),
    ("train.checkpoint_every=0", "train.checkpoint_every must be >= 1"),
    ("train.log_every=0", "train.log_every must be >= 1"),
    ("train.lr=0", "train.lr must be > 0"),
    ("train.lr=-0.1", "train.lr must be > 0"),
    ("train.lr=nan", "train.lr must be a finite number"),
    ("train.lr=inf", "train.lr must be a finite number"),
    ("train.min_lr_ratio=2", "train.min_lr_ratio must be in [0, 1]"),
    ("train.weight_decay=-1", "train.weight_decay must be >= 0"),
    ("train.warmup_steps=-5", "train.warmup_steps must be >= 0"),
    ("train.grad_clip=-1", "train.grad_clip must be >= 0"),
    ("train.monitor_every=-1", "train.monitor_every must be >= 0"),
    ("train.budget=-3", "train.budget must be >= 0"),
    ("train.strategy=ring", "train.strategy must be one of"),
    ("train.device=cuda", "train.device 'cuda': CUDA is not available"),
    ("train.device=cuda:7", "train.device 'cuda:7'"),
    ("train.device=tpu", "train.device must be auto, cpu, cuda, cuda:N or mps"),
    ("data.num_workers=-1", "data.num_workers must be >= 0"),
    ("data.augment_strength=-1", "data.augment_strength must be >= 0"),
    ("data.on_bad_sample=ignore", "data.on_bad_sample must be 'raise' or 'skip'"),
    ("model.mask_ratio=0", "model.mask_ratio must be in (0, 1), got 0.0"),
    ("model.mask_ratio=1", "model.mask_ratio must be in (0, 1)"),
    ("model.mask_ratio=1.5", "model.mask_ratio must be in (0, 1)"),
    ("model.mask_ratio=-0.2", "model.mask_ratio must be in (0, 1)"),
    ("model.block_size=0", "model.block_size must be >= 1"),
    ("model.decoder_depth=0", "model.decoder_depth must be >= 1"),
    ("model.decoder_heads=-1", "model.decoder_heads must be >= 1"),
    ("model.cross_temperature=0", "model.cross_temperature must be > 0"),
    ("data.options.patch_size=0", "data.options.patch_size must be >= 1"),
    ("data.options.patch_size=-4", "data.options.patch_size must be >= 1"),
    ("data.options.patch_size=[4, 0]", "data.options.patch_size must be >= 1"),
    ("data.options.image_size=0", "data.options.image_size must be >= 1"),
    ("data.options.patch_size=2.5", "data.options.patch_size expects an integer"),
    ("objectives.mae.weight=-1", "objectives.mae.weight must be > 0"),
    ("objectives.mae.weight=0", "objectives.mae.weight must be > 0"),
    ("objectives.contrastive.temperature=0", "objectives.contrastive.temperature must be > 0"),
    ("objectives.contrastive.proj_dim=0", "objectives.contrastive.proj_dim must be >= 1"),
    ("objectives.mae.bogus=1", "objectives.mae.bogus: unknown argument of objective 'mae' (known: weight, norm_targets)"),
    ("objectives.contrastive.tau=0.1", "objectives.contrastive.tau: unknown argument"),
    ("train.steps=abc", "config key 'train.steps' expects a int"),
    ("train.bf16=maybe", "expects true/false"),
]


@pytest.mark.parametrize("kv, message", BAD_SETS, ids=[k for k, _ in BAD_SETS])
def test_bad_key_is_one_line_before_any_data_is_read(kv, message, cli, tmp_path):
    r = cli("pretrain", "--modality", "image", "--data", tmp_path / "never-read", "--out", tmp_path / "run",
            "--objective", "mae+contrastive", "--set", kv, "--quiet")
    r.one_error_line(message)
    assert not (tmp_path / "run" / "checkpoint").exists()


BAD_FLAGS = [
    (["--batch-size", "-4"], "train.batch_size must be >= 0"),
    (["--batch-size", "1"], "train.batch_size must be 0 (fit to the data) or at least 2"),
    (["--steps", "-1"], "train.steps must be >= 0"),
    (["--epochs", "-1"], "train.epochs must be >= 0"),
    (["--objective", "mae:-1"], "objectives.mae.weight must be > 0"),
    (["--objective", "mae:0"], "objectives.mae.weight must be > 0"),
    (["--objective", "mae:x"], "objective weight must be a number"),
    (["--budget=-5m"], "a duration must be positive"),
]


@pytest.mark.parametrize("flags, message", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_flag_is_one_line(flags, message, cli, tmp_path):
    cli("pretrain", "--modality", "image", "--data", tmp_path, "--out", tmp_path / "run", *flags,
        "--quiet").one_error_line(message)


def test_yaml_with_bad_types_is_one_line(cli, tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  steps: [1, 2]\nmodel:\n  mask_ratio: 0.5\n")
    cli("pretrain", tmp_path / "c.yaml", "--data", tmp_path, "--out", tmp_path / "run").one_error_line(
        "train.steps expects an integer, got [1, 2]")


@pytest.mark.parametrize("args, message", [
    (["eval", "knn", "--k", "0"], "--k must be >= 1, got 0"),
    (["retrieve", "query", "--k", "0"], "--k must be at least 1"),
    (["embed", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["finetune", "--lr", "-1"], "finetune.lr must be > 0"),
    (["finetune", "--device", "cuda"], "CUDA is not available"),
    (["finetune", "--epochs", "0"], "finetune.epochs must be >= 1"),
])
def test_other_commands_check_their_numbers(args, message, cli, pretrained, tmp_path, png_folder):
    fill = {"eval": ["--embeddings", tmp_path / "e.parquet", "--labels", tmp_path / "l.csv"],
            "retrieve": ["--index", tmp_path / "idx", "--modality", "image", "--data", png_folder, "--out", tmp_path / "r.csv"],
            "embed": ["--checkpoint", pretrained, "--data", png_folder, "--out", tmp_path / "e.parquet"],
            "finetune": ["--checkpoint", pretrained, "--data", png_folder / "manifest.csv", "--out", tmp_path / "ft"]}
    (tmp_path / "l.csv").write_text("id,label\na,1\n")
    cli(*args, *fill[args[0]]).one_error_line(message)


def test_cuda_without_cuda_in_fit_is_one_line(cli, tmp_path, png_folder, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cli("pretrain", "--modality", "image", "--data", png_folder, "--out", tmp_path / "run", "--steps", "1",
        "--set", "train.device=cuda:0").one_error_line("CUDA is not available")
