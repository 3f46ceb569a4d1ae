"""The typed, versioned run record: round trip, migration of older checkpoint configs (the
committed fixture's, a paired run's), options per modality, and the record every writer saves."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from omnipatch.config import Config
from omnipatch.errors import OmnipatchError
from omnipatch.runspec import VERSION, RunSpec, migrate, modality_list

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "run_2026_12_image" / "run"


def _fixture_config() -> dict:
    return json.loads((FIXTURE / "checkpoint" / "config.json").read_text())


def _paired_v1() -> dict:
    """A paired run's checkpoint config as written before the RunSpec (no version; bf16 alias)."""
    run = Config().to_dict()
    run["data"].update(modality="image,audio", source="pairs.csv",
                       options={"image": {"image_size": 16}, "audio": {"seconds": 0.5, "n_mels": 16}})
    run["train"].pop("precision")
    run["train"].pop("loggers")
    run["train"]["bf16"] = False
    run["model"]["cross_dim"] = 64
    return {"run": run, "model": {"objectives": {"mae": {"weight": 1.0}}, "cross": {"proj_dim": 64}},
            "modality": "image,audio", "classes": None, "init": None}


def test_the_fixture_config_migrates_and_keeps_its_options():
    cfg = _fixture_config()
    assert "version" not in cfg["run"]  # written before the RunSpec: version 1
    spec = RunSpec.from_checkpoint(cfg)
    assert spec.version == VERSION and spec.modalities == ["image"] and not spec.paired
    assert spec.options_for("image") == {"image_size": 16} == spec.options_for()
    assert spec.source == "data" and spec.model.preset == "micro" and spec.train.batch_size == 8
    assert spec.objectives == {"mae": {"weight": 1.0}, "dhel": {"weight": 1.0}}
    assert spec.train.precision == "fp32" and spec.cross is None
    # typed: the declared defaults under the recorded values
    assert spec.data_options().image_size == 16 and spec.data_options().channels is None
    assert spec.adapter_options().patch_size == 4
    assert RunSpec.from_dir(FIXTURE) == spec


def test_the_saved_record_keeps_the_old_shape_plus_a_version():
    cfg = _fixture_config()
    d = RunSpec.from_checkpoint(cfg).to_dict()
    assert d["version"] == VERSION
    old = {k: v for k, v in d.items() if k != "version"}
    old["train"].pop("loggers")  # a key added after the fixture was written
    assert old == cfg["run"]  # readers that index run["data"]["options"] keep working


def test_round_trip():
    spec = RunSpec.from_checkpoint(_paired_v1())
    again = RunSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert RunSpec.from_config(spec.to_config()) == spec


def test_a_paired_v1_config_migrates():
    spec = RunSpec.from_checkpoint(_paired_v1())
    assert spec.modalities == ["image", "audio"] and spec.paired
    assert spec.options_for("image") == {"image_size": 16}
    assert spec.options_for("audio") == {"seconds": 0.5, "n_mels": 16}
    assert spec.data_options("audio").seconds == 0.5 and spec.data_options("audio").sample_rate == 16000
    assert spec.train.precision == "fp32"  # train.bf16 = false, the old key
    assert spec.cross.proj_dim == 64 and spec.cross.as_kwargs()["temperature"] == 0.07
    d = spec.to_dict()
    assert d["data"]["modality"] == "image,audio" and set(d["data"]["options"]) == {"image", "audio"}
    with pytest.raises(OmnipatchError, match="trained on image, audio, not 'video'"):
        spec.options_for("video")


def test_migrate_fills_what_an_old_record_lacks():
    cfg = _paired_v1()
    del cfg["run"]["objectives"]
    del cfg["run"]["data"]["modality"]
    spec = RunSpec.from_checkpoint(cfg)
    assert spec.objectives == {"mae": {"weight": 1.0}}  # the model config's
    assert spec.modalities == ["image", "audio"]  # the top-level modality
    out = migrate(cfg["run"], cfg)
    assert out["version"] == VERSION and "version" not in cfg["run"]  # a new dict


def test_options_for_returns_a_copy():
    spec = RunSpec.from_checkpoint(_paired_v1())
    spec.options_for("image")["image_size"] = 99
    assert spec.options_for("image") == {"image_size": 16}


def test_only_narrows_to_one_modality():
    spec = RunSpec.from_checkpoint(_paired_v1())
    one = spec.only("audio", {"seconds": 1.0})
    assert one.modalities == ["audio"] and one.options == {"audio": {"seconds": 1.0}} and one.cross is None
    assert one.to_dict()["data"]["options"] == {"seconds": 1.0}  # flat for one modality, as before
    assert spec.modalities == ["image", "audio"]


def test_newer_and_malformed_records_are_one_line():
    cfg = _fixture_config()
    cfg["run"]["version"] = VERSION + 1
    with pytest.raises(OmnipatchError, match="newer than this omnipatch reads"):
        RunSpec.from_checkpoint(cfg)
    bad = _fixture_config()
    bad["run"]["data"] = "image"
    with pytest.raises(OmnipatchError, match="run.data must be a mapping"):
        RunSpec.from_checkpoint(bad)


def test_a_key_this_version_does_not_know_is_left_out():
    cfg = _fixture_config()
    cfg["run"]["train"]["from_the_future"] = 1
    assert RunSpec.from_checkpoint(cfg).train.steps == 2


def test_modality_list():
    assert modality_list("image") == ["image"]
    assert modality_list(" image, audio ,") == ["image", "audio"]
    assert modality_list(["a ", "b"]) == ["a", "b"] and modality_list(None) == []


def test_pretrain_writes_a_versioned_record(tmp_path):
    from omnipatch.train.pretrain import pretrain

    data = tmp_path / "data"
    data.mkdir()
    from omnipatch.modality import MODALITIES

    spec = MODALITIES.get("image")
    source = spec.example(data)
    cfg = Config()
    cfg.data.modality, cfg.data.source, cfg.data.options = "image", str(source), dict(spec.example_options)
    cfg.model.preset, cfg.model.decoder_dim = "micro", 32
    cfg.train.steps, cfg.train.batch_size, cfg.train.monitor_every = 1, 2, 0
    pretrain(cfg, tmp_path / "run", quiet=True, report=False)
    saved = json.loads((tmp_path / "run" / "checkpoint" / "config.json").read_text())
    assert saved["run"]["version"] == VERSION
    rec = RunSpec.from_dir(tmp_path / "run")
    assert rec.modalities == ["image"] and rec.options_for("image")["image_size"] == 8
    before = copy.deepcopy(saved)
    assert RunSpec.from_checkpoint(before).to_dict() == saved["run"]
