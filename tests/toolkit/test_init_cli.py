"""``--init`` end to end: pretrain from an omnipatch run, fine-tune and load from a Hugging Face
folder; the report is printed and written."""

import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from omnipatch.cli import main  # noqa: E402
from omnipatch.modalities.image_demo import write_digits  # noqa: E402
from omnipatch.train import checkpoint as ckpt  # noqa: E402

OPTS = '{"image_size": 16, "patch_size": 4, "channels": 1}'


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("digits"))


def _pretrain(data, out, *extra):
    return main(["pretrain", "--modality", "image", "--data", str(data), "--out", str(out), "--steps", "2",
                 "--preset", "micro", "--batch-size", "16", "--objective", "mae", "--set", f"data.options={OPTS}",
                 "--set", "train.monitor_every=0", "--quiet", *extra])


def test_pretrain_init_from_run_starts_from_its_weights(digits, tmp_path, capsys):
    assert _pretrain(digits["train"], tmp_path / "A") == 0
    assert _pretrain(digits["test"], tmp_path / "B", "--init", str(tmp_path / "A"), "--init-strict") == 0
    report = json.loads((tmp_path / "B" / "init_report.json").read_text())
    assert report["counts"]["new"] == 0 and report["counts"]["loaded"] > 0
    cfg = ckpt.load_config(tmp_path / "B")
    assert cfg["init"]["source"] == str(tmp_path / "A") and cfg["model"]["encoder"] == ckpt.load_config(
        tmp_path / "A")["model"]["encoder"]
    # a missing source: one line, exit 2
    assert _pretrain(digits["test"], tmp_path / "C", "--init", str(tmp_path / "nope")) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


@pytest.mark.slow
def test_initialised_model_computes_the_runs_loss_on_its_data_and_refits_statistics(digits, tmp_path):
    """Continued pretraining starts where A left off: a model of A's recipe initialised from A
    has A's MAE loss on A's data (same batch, same masks); on new data the normalisation is
    fitted to the new data, as a scratch run's."""
    import omnipatch
    from omnipatch.batch import collate
    from omnipatch.init import init_model
    from omnipatch.init.run import build_initialised
    from omnipatch.model import OmniModel

    assert _pretrain(digits["train"], tmp_path / "A") == 0
    cfg = ckpt.load_config(tmp_path / "A")
    a = OmniModel.from_config(cfg["model"])
    ckpt.load_weights(tmp_path / "A", a)
    torch.manual_seed(1)
    same, _ = init_model(OmniModel.from_config(cfg["model"]), str(tmp_path / "A"))  # fresh weights, then A's
    pre = omnipatch.load(tmp_path / "A")
    batch = collate([pre.open(str(digits["train"]))[i] for i in range(32)])
    losses = [float(m.eval()([batch] * m.n_views, "image", torch.Generator().manual_seed(3))["mae"]) for m in (a, same)]
    assert losses[0] == pytest.approx(losses[1], abs=1e-6) and losses[0] > 0
    opts = json.loads(OPTS)
    other, _ = build_initialised(str(tmp_path / "A"), "image", digits["test"], opts, quiet=True)
    fitted = other.adapters["image"].config()
    assert fitted["mean"] != a.adapters["image"].config()["mean"]
    test_mean = float(torch.stack([s.x.float().mean() for s in pre.open(str(digits["test"]))]).mean())
    assert fitted["mean"][0] == pytest.approx(test_mean, abs=1e-4)


def test_finetune_and_load_from_hugging_face_vitmae(digits, tmp_path, capsys):
    tr = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = tr.ViTMAEForPreTraining(tr.ViTMAEConfig(
        image_size=32, patch_size=2, num_channels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, decoder_hidden_size=32, decoder_num_hidden_layers=1, decoder_num_attention_heads=4,
        decoder_intermediate_size=37))
    hf.save_pretrained(tmp_path / "mae")
    rc = main(["finetune", "--init", str(tmp_path / "mae"), "--modality", "image", "--data", str(digits["train"]),
               "--out", str(tmp_path / "ft"), "--epochs", "1", "--mode", "linear", "--option", "image_size=16",
               "--option", "patch_size=4", "--option", "channels=1"])
    assert rc == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "init from Hugging Face ViTMAEForPreTraining" in err and "channels 3 -> 1" in err
    assert (tmp_path / "ft" / "init" / "init_report.json").is_file() and (tmp_path / "ft" / "metrics.json").is_file()
    import omnipatch

    pre = omnipatch.load(init=str(tmp_path / "mae"), modality="image", data=str(digits["test"]),
                         options={"image_size": 16, "patch_size": 4, "channels": 1})
    ids, emb = pre.embed(str(digits["test"]))
    assert emb.shape == (len(ids), 32) and torch.isfinite(emb).all()
    assert pre.model.adapters["image"].pos_grid == (16, 16)  # ViTMAE's table, resampled to 4 x 4 on use
