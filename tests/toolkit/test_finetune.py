"""Fine-tuning: metrics, heads, freezing and layer-wise decay, channel inflation, the loop end
to end on tiny real PNGs, feature extraction from Python, and the CLI's error contract."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

import omnipatch
from omnipatch.errors import OmnipatchError
from omnipatch.eval import metrics as M
from omnipatch.finetune import (
    FinetuneConfig,
    FinetuneModel,
    build_head,
    finetune,
    layer_decay_groups,
    load_finetuned,
    set_trainable,
)
from omnipatch.heads.task import DenseHead
from omnipatch.inflate import adapt_state_dict, inflate_channels, load_adapted
from omnipatch.train import checkpoint as ckpt


# -- shared fixtures (test_export.py imports make_run) ----------------------------------------------
def write_bars(root, n: int = 24, channels: int = 1):
    """``n`` 16x16 images of a horizontal or vertical bar + class maps + label CSVs."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        img = (rng.random((16, 16)) * 60).astype(np.uint8)
        mask = np.zeros((16, 16), np.uint8)
        pos = 2 + (i // 2) % 10
        if i % 2:
            img[:, pos:pos + 4], mask[:, pos:pos + 4] = 255, 1
        else:
            img[pos:pos + 4, :], mask[pos:pos + 4, :] = 255, 1
        if channels == 1:
            Image.fromarray(img).save(root / f"img_{i:02d}.png")
            name = f"img_{i:02d}.png"
        else:
            arr = np.stack([img * (c + 1) / channels for c in range(channels)], -1).astype(np.float32) / 255
            name = f"img_{i:02d}.npy"
            np.save(root / name, arr)
        Image.fromarray(mask * 255).save(root / f"mask_{i:02d}.png")
        rows.append({"path": name, "id": f"id{i}", "label": "vertical" if i % 2 else "horizontal",
                     "pos": pos, "mask": f"mask_{i:02d}.png",
                     "tags": ("bar;vertical" if i % 2 else "bar;horizontal") + (";wide" if pos > 6 else "")})
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "id", "label"])
        w.writerows([r["path"], r["id"], r["label"]] for r in rows)
    for name, col in (("labels.csv", "label"), ("positions.csv", "pos"), ("masks.csv", "mask"), ("tags.csv", "tags")):
        with open(root / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "label"])
            w.writerows([r["id"], r[col]] for r in rows)
    return root


def make_run(root):
    """A real (2-step) pretraining run of the micro preset on 16x16 bar images."""
    from omnipatch.config import Config
    from omnipatch.train.pretrain import pretrain

    data = write_bars(root / "bars")
    c = Config()
    c.data.source = str(data / "manifest.csv")
    c.data.options = {"image_size": 16, "patch_size": 4}
    c.model.preset = "micro"
    c.model.decoder_dim, c.model.decoder_depth = 32, 1
    c.objectives = {"mae": {"weight": 1.0}}
    c.train.steps, c.train.batch_size, c.train.warmup_steps = 2, 8, 1
    pretrain(c, root / "run", quiet=True)
    return root / "run", data


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("ft"))


def _fast(**kw) -> FinetuneConfig:
    base = dict(mode="linear", epochs=15, batch_size=8, lr=1e-2, bf16=False, device="cpu")
    return FinetuneConfig(**{**base, **kw})


# -- metrics -----------------------------------------------------------------------------------
def test_metrics_match_scikit_learn():
    from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    probs = rng.dirichlet(np.ones(4), 200)
    probs[np.arange(200), y] += 0.3 * rng.random(200)
    probs /= probs.sum(1, keepdims=True)
    m = M.classification_metrics(y, probs)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, probs.argmax(1)))
    assert m["macro_f1"] == pytest.approx(f1_score(y, probs.argmax(1), average="macro"))
    assert m["auroc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    yb = rng.integers(0, 2, 50)
    pb = np.round(rng.random(50), 1)  # ties
    assert M.macro_auroc(np.eye(2)[yb], np.stack([1 - pb, pb], 1)) == pytest.approx(roc_auc_score(yb, pb))
    t = rng.integers(0, 2, (60, 3))
    p = rng.random((60, 3))
    ml = M.multilabel_metrics(t, p)
    assert ml["macro_f1"] == pytest.approx(f1_score(t, p >= 0.5, average="macro", zero_division=0))
    assert ml["auroc"] == pytest.approx(roc_auc_score(t, p, average="macro"))
    v, w = rng.random(30), rng.random(30)
    r = M.regression_metrics(v, w)
    assert r["mae"] == pytest.approx(mean_absolute_error(v, w))
    assert r["rmse"] == pytest.approx(np.sqrt(((v - w) ** 2).mean()))
    tgt = np.array([[0, 1, 1], [2, 2, 0]])
    pred = np.array([[0, 1, 0], [2, 1, 0]])
    d = M.dice_scores(tgt, pred, 4)  # class 1: 2*1/(2+2); class 2: 2*1/(2+1); class 3: absent
    assert d[0] == pytest.approx(0.5) and d[1] == pytest.approx(2 / 3) and math.isnan(d[2])
    assert M.segmentation_metrics(tgt, pred, 4)["dice"] == pytest.approx((0.5 + 2 / 3) / 2)


# -- heads, freezing, layer decay --------------------------------------------------------------
def test_dense_head_reassembles_patches_like_the_grid_adapter():
    from omnipatch.adapters.grid import GridAdapter

    for patch, grid in (([4, 4], (2, 3)), ([2, 2, 2], (2, 1, 3))):
        head = DenseHead(8, 3, patch)
        adapter = GridAdapter("g", 3, patch, 8)
        hidden = torch.randn(2, math.prod(grid), 8)
        out = head(hidden, hidden.mean(1), grid)
        assert out.shape == (2, 3, *[g * p for g, p in zip(grid, patch)])
        flat = head.fc(head.norm(hidden))  # (B, L, prod(p) * K), ordered (p.., K) as the adapter's patches
        assert torch.equal(out, adapter.unpatchify(flat, grid))
    with pytest.raises(OmnipatchError, match="regular patch grid"):
        head(torch.randn(1, 5, 8), torch.randn(1, 8), None)


def test_modes_freeze_and_layer_decay(run):
    from omnipatch.finetune import load_backbone
    from omnipatch.finetune.labels import build_labels

    run_dir, data = run
    pre = omnipatch.load(run_dir, device="cpu")
    adapters, encoder, _ = load_backbone(run_dir, pre.open(data / "manifest.csv"))
    model = FinetuneModel(adapters, encoder, build_head({"kind": "pooled", "dim": 128, "outputs": 2}), "image")
    depth = len(encoder.blocks)
    trainable = lambda: {n for n, p in model.named_parameters() if p.requires_grad}  # noqa: E731
    set_trainable(model, "linear", 2)
    assert trainable() == {"head.norm.weight", "head.norm.bias", "head.fc.weight", "head.fc.bias"}
    set_trainable(model, "partial", 1)
    assert {n.split(".")[0] + "." + n.split(".")[1] for n in trainable()} == {
        "head.norm", "head.fc", "encoder.blocks", "encoder.norm"}
    assert all(n.startswith(f"encoder.blocks.{depth - 1}.") for n in trainable() if "blocks" in n)
    with pytest.raises(OmnipatchError, match="partial_blocks"):
        set_trainable(model, "partial", depth + 1)
    set_trainable(model, "full", 0)
    groups = layer_decay_groups(model, 1.0, 0.5, 0.05)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["head.fc.weight"])] == 1.0
    assert lr_of[id(named[f"encoder.blocks.{depth - 1}.mlp.fc1.weight"])] == 0.5
    assert lr_of[id(named["encoder.blocks.0.mlp.fc1.weight"])] == 0.5 ** depth
    assert lr_of[id(named["adapters.image.proj.weight"])] == 0.5 ** (depth + 1)
    assert all(g["weight_decay"] == 0.0 for g in groups for p in g["params"] if p.ndim < 2)
    assert sum(len(g["params"]) for g in groups) == len(named)
    lab = build_labels(pre.open(data / "manifest.csv"), None, "classification")
    assert lab.classes == ["horizontal", "vertical"] and len(lab.rows) == 24


# -- channel inflation ---------------------------------------------------------------------------
def test_inflation_rule_on_weights():
    w = torch.arange(6.0).reshape(2, 3)  # (D=2, C=3) at one patch position
    assert torch.equal(inflate_channels(w, 3, 3), w)
    up = inflate_channels(w, 3, 7)  # cyclic repeat, times 3/7
    assert torch.allclose(up, w[:, [0, 1, 2, 0, 1, 2, 0]] * 3 / 7)
    assert torch.allclose(inflate_channels(w, 3, 1), w.sum(1, keepdim=True))
    w4 = torch.arange(8.0).reshape(2, 4)
    assert torch.allclose(inflate_channels(w4, 4, 2), torch.stack([w4[:, 0] + w4[:, 2], w4[:, 1] + w4[:, 3]], 1))
    assert torch.allclose(inflate_channels(w4, 4, 2, scale=False), torch.stack([w4[:, 0] + w4[:, 2], w4[:, 1] + w4[:, 3]], 1) / 2)
    assert torch.allclose(inflate_channels(w[:, :1], 1, 4), w[:, :1].repeat(1, 4) / 4)
    with pytest.raises(OmnipatchError, match="0 input channels"):
        inflate_channels(w, 3, 0)


@pytest.mark.parametrize("c_old, c_new", [(1, 4), (3, 13), (3, 1), (4, 2)])
def test_adapted_adapter_keeps_the_embedding_of_channel_constant_inputs(c_old, c_new):
    """The documented invariant: an input equal in every channel embeds the same (exactly when
    C divides C' or C' < C; 3 -> 13 is approximate)."""
    from omnipatch.adapters.image import ImageAdapter
    from omnipatch.batch import Batch

    torch.manual_seed(0)
    a = ImageAdapter(c_old, 4, 16)
    cfg = {"adapters": {"image": {"name": "image", "kwargs": a.config()}}}
    state = {f"adapters.image.{k}": v for k, v in a.state_dict().items()}
    new_state, new_cfg = adapt_state_dict(state, cfg, "image", c_new)
    b = ImageAdapter(**new_cfg["adapters"]["image"]["kwargs"])
    b.load_state_dict({k.removeprefix("adapters.image."): v for k, v in new_state.items()})
    x = torch.rand(2, 1, 8, 8)
    t_old = a.tokenize(Batch(x=x.expand(-1, c_old, -1, -1))).tokens
    t_new = b.tokenize(Batch(x=x.expand(-1, c_new, -1, -1))).tokens
    tol = 1e-5 if (c_new % c_old == 0 or c_new < c_old) else 0.5
    assert (t_old - t_new).abs().max() < tol
    assert new_state["adapters.image.proj.bias"] is state["adapters.image.proj.bias"]


def test_load_adapted_full_model_and_what_cannot_be_adapted(run):
    from safetensors.torch import load_file

    run_dir, _ = run
    model = load_adapted(run_dir, 3, mean=[0.1, 0.2, 0.3], std=[1.0, 1.0, 2.0])  # strict load inside
    old = load_file(str(ckpt.find(run_dir) / "model.safetensors"))
    w = old["adapters.image.proj.weight"]  # (D, 16 * 1)
    assert torch.allclose(model.adapters["image"].proj.weight.reshape(w.shape[0], 16, 3), (w / 3)[:, :, None].expand(-1, -1, 3))
    pred = old["pred.image.weight"]  # (16 * 1, Ddec): rows copied per new channel
    assert torch.equal(model.pred["image"].weight.reshape(16, 3, -1), pred[:, None, :].expand(-1, 3, -1))
    assert model.adapters["image"].mean.tolist() == pytest.approx([0.1, 0.2, 0.3])
    cfg = ckpt.load_config(run_dir)["model"]
    state = {"adapters.image.proj.weight": w}
    with pytest.raises(OmnipatchError, match="patch size"):
        adapt_state_dict(state, cfg, "image", 3, patch_size=[8, 8])
    with pytest.raises(OmnipatchError, match="3 values"):
        adapt_state_dict(state, cfg, "image", 3, mean=[0.0])
    tab = {"adapters": {"tabular": {"name": "tabular", "kwargs": {"dim": 8, "columns": ["a"], "kinds": ["numeric"]}}}}
    with pytest.raises(OmnipatchError, match="only grid adapters"):
        adapt_state_dict({}, tab, "tabular", 3)
    pc = {"adapters": {"pointcloud": {"name": "pointcloud", "kwargs": {"dim": 8, "in_chans": 3, "patch_size": 1}}}}
    with pytest.raises(OmnipatchError, match="only grid adapters"):
        adapt_state_dict({}, pc, "pointcloud", 6)


# -- the loop end to end -------------------------------------------------------------------------
def test_finetune_linear_end_to_end_and_reload(run, tmp_path):
    run_dir, data = run
    res = finetune(run_dir, data / "manifest.csv", tmp_path / "ft", data / "labels.csv", _fast(), quiet=True,
                   test_data=data / "manifest.csv", test_labels=data / "labels.csv")
    assert res["n_train"] + res["n_val"] == 24 and res["n_val"] == 4
    for f in ("checkpoint/model.safetensors", "checkpoint/config.json", "metrics.json", "history.jsonl"):
        assert (tmp_path / "ft" / f).is_file(), f
    assert json.loads((tmp_path / "ft" / "metrics.json").read_text())["val"] == res["val"]
    hist = [json.loads(x) for x in (tmp_path / "ft" / "history.jsonl").read_text().splitlines()]
    assert {"train_loss", "val_loss", "val_accuracy", "val_macro_f1", "val_auroc"} <= set(hist[0])
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    ft = load_finetuned(tmp_path / "ft", device="cpu")
    assert ft.config["best_epoch"] == res["best_epoch"]
    ids, probs = ft.predict(data / "manifest.csv")
    assert probs.shape == (24, 2) and np.allclose(probs.sum(1), 1, atol=1e-5) and ids[0] == "id0"
    truth = np.array([i % 2 for i in range(24)])
    assert res["test"]["accuracy"] == pytest.approx(float((probs.argmax(1) == truth).mean()))
    assert ft.evaluate(data / "manifest.csv", data / "labels.csv") == res["test"]


def test_full_mode_trains_every_layer(run, tmp_path):
    from safetensors.torch import load_file

    run_dir, data = run
    res = finetune(run_dir, data / "manifest.csv", tmp_path / "ft", None,
                   _fast(mode="full", epochs=1, lr=1e-3, val_fraction=0.0), quiet=True)
    assert res["n_val"] == 0 and res["best_epoch"] == 1  # no validation: the last epoch is kept
    old = load_file(str(ckpt.find(run_dir) / "model.safetensors"))
    new = load_file(str(ckpt.find(tmp_path / "ft") / "model.safetensors"))
    for k in ("adapters.image.proj.weight", "encoder.blocks.0.attn.qkv.weight", "encoder.norm.weight"):
        assert not torch.equal(old[k], new[k]), k  # every layer trained (at its decayed rate)


@pytest.mark.slow
def test_full_mode_learns_the_task(run, tmp_path):
    run_dir, data = run
    res = finetune(run_dir, data / "manifest.csv", tmp_path / "ft", None,
                   _fast(mode="full", epochs=6, lr=1e-3, val_fraction=0.0), quiet=True)
    assert res["train"]["accuracy"] >= 0.9, res


def test_regression_multilabel_and_partial(run, tmp_path):
    run_dir, data = run
    reg = finetune(run_dir, data / "manifest.csv", tmp_path / "reg", data / "positions.csv",
                   _fast(task="regression", mode="partial", partial_blocks=1, epochs=2), quiet=True)
    assert {"mae", "rmse", "r2"} <= set(reg["val"]) and reg["val"]["rmse"] >= reg["val"]["mae"]
    ft = load_finetuned(tmp_path / "reg", device="cpu")
    _, values = ft.predict(data / "manifest.csv")
    assert values.shape == (24,) and 0 < values.mean() < 20  # de-standardised back to positions (2..11)
    ml = finetune(run_dir, data / "manifest.csv", tmp_path / "ml", data / "tags.csv",
                  _fast(multi_label=True, epochs=4), quiet=True)
    assert {"subset_accuracy", "macro_f1", "auroc"} <= set(ml["val"])
    assert load_finetuned(tmp_path / "ml").config["classes"] == ["bar", "horizontal", "vertical", "wide"]


def test_segmentation_dense_head(run, tmp_path):
    run_dir, data = run
    res = finetune(run_dir, data / "manifest.csv", tmp_path / "seg", data / "masks.csv",
                   _fast(task="segmentation", epochs=25, lr=2e-2), quiet=True)
    assert {"dice", "pixel_accuracy"} <= set(res["val"])
    assert res["train"]["dice"] > 0.3, res  # the bar covers 25 % of the pixels
    ft = load_finetuned(tmp_path / "seg", device="cpu")
    assert ft.config["classes"] == ["0", "255"]
    _, maps = ft.predict(data / "manifest.csv")
    assert maps.shape == (24, 16, 16) and set(np.unique(maps)) <= {0, 1}


def test_finetune_on_more_channels_inflates_the_checkpoint(run, tmp_path):
    from safetensors.torch import load_file

    run_dir, _ = run
    data4 = write_bars(tmp_path / "four", channels=4)
    res = finetune(run_dir, data4 / "manifest.csv", tmp_path / "ft4", None, _fast(epochs=2), quiet=True,
                   options={"channels": 4})  # the image reader would read 4 bands as RGB + alpha
    assert res["n_train"] == 20
    cfg = ckpt.load_config(tmp_path / "ft4")
    kw = cfg["model"]["adapters"]["image"]["kwargs"]
    assert kw["in_chans"] == 4 and len(kw["mean"]) == 4
    old = load_file(str(ckpt.find(run_dir) / "model.safetensors"))["adapters.image.proj.weight"]
    new = load_file(str(ckpt.find(tmp_path / "ft4") / "model.safetensors"))["adapters.image.proj.weight"]
    assert torch.equal(new, inflate_channels(old.reshape(-1, 16, 1), 1, 4).reshape(-1, 64))  # frozen in linear mode


def test_embed_from_python_paths_folder_tensor(run):
    run_dir, data = run
    pre = omnipatch.load(run_dir, device="cpu")
    ids_m, from_manifest = pre.embed(data / "manifest.csv", bf16=False)
    paths = [str(data / f"img_{i:02d}.png") for i in range(24)]
    ids_p, from_paths = pre.embed(paths, bf16=False)
    ids_f, from_folder = pre.embed(data, bf16=False)
    x = torch.stack([pre.open(paths)[i].x for i in range(24)])
    _, from_tensor = pre.embed(x, bf16=False)
    assert from_manifest.shape == (24, 128) and ids_m[0] == "id0" and ids_p == paths
    assert torch.equal(from_paths, from_manifest) and torch.equal(from_tensor, from_manifest)
    assert set(paths) <= set(ids_f)  # the folder also holds the class maps
    assert torch.equal(from_folder[[ids_f.index(p) for p in paths]], from_manifest)


# -- the command line -----------------------------------------------------------------------------
def _cli(args, capsys):
    from omnipatch.cli import main

    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("extra, message", [
    (["--labels", "/no/labels.csv"], "labels file not found"),
    (["--labels", "{bad_cols}"], "needs columns 'id' and 'label'"),
    (["--labels", "{other_ids}"], "no sample id matches a label id"),
    (["--labels", "{labels}", "--task", "regression"], "is not a number (task regression)"),
    (["--labels", "{labels}", "--task", "clasification"], "invalid choice"),
    (["--labels", "{labels}", "--mode", "partial", "--partial-blocks", "9"], "partial_blocks must be between 1"),
    (["--labels", "{labels}", "--val-fraction", "1.5"], "val_fraction must be in [0, 1)"),
    (["--labels", "{labels}", "--option", "colour=3"], "unknown option(s) ['colour']"),
    (["--labels", "{one_class}"], "at least 2 classes"),
    (["--labels", "{masks}", "--task", "segmentation", "--augment-strength", "1"], "augment_strength must be 0"),
])
def test_finetune_cli_user_errors(run, tmp_path, capsys, extra, message):
    run_dir, data = run
    (tmp_path / "bad.csv").write_text("name,class\na,b\n")
    (tmp_path / "other.csv").write_text("id,label\nzz1,a\nzz2,b\n")
    (tmp_path / "one.csv").write_text("id,label\nid0,a\nid1,a\n")
    fill = {"{bad_cols}": tmp_path / "bad.csv", "{other_ids}": tmp_path / "other.csv", "{labels}": data / "labels.csv",
            "{one_class}": tmp_path / "one.csv", "{masks}": data / "masks.csv"}
    args = ["finetune", "--checkpoint", run_dir, "--data", data / "manifest.csv", "--out", tmp_path / "o",
            "--epochs", "1", "--quiet"] + [fill.get(e, e) for e in extra]
    code, _, err = _cli(args, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("omnipatch: error:") and message in lines[0], err


def test_finetune_cli_end_to_end_and_checkpoint_errors(run, tmp_path, capsys):
    run_dir, data = run
    ft = tmp_path / "ft"
    code, out, err = _cli(["finetune", "--checkpoint", run_dir, "--data", data / "manifest.csv", "--labels",
                           data / "labels.csv", "--task", "classification", "--mode", "linear", "--out", ft,
                           "--epochs", "3", "--batch-size", "8", "--device", "cpu", "--test-data",
                           data / "manifest.csv", "--quiet"], capsys)
    assert code == 0, err
    assert "fine-tuned (classification, linear) on 20 samples, validated on 4" in out and "test  accuracy" in out
    code, _, err = _cli(["finetune", "--checkpoint", ft, "--data", data / "manifest.csv", "--out", tmp_path / "x"], capsys)
    assert code == 2 and "is a fine-tuned checkpoint" in err
    code, _, err = _cli(["finetune", "--checkpoint", tmp_path / "none", "--data", data, "--out", tmp_path / "x"], capsys)
    assert code == 2 and "no checkpoint" in err
    code, _, err = _cli(["finetune", "--checkpoint", run_dir, "--data", data, "--out", tmp_path / "x"], capsys)
    assert code == 2 and "no labels: pass --labels" in err  # a folder has no label column
