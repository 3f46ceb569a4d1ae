import pytest

from omnipatch.config import Config, load_yaml, parse_objectives, set_key
from omnipatch.errors import OmnipatchError


def test_set_key_coerces_types():
    c = Config()
    set_key(c, "train.steps", "42")
    set_key(c, "train.lr", "3e-4")
    set_key(c, "train.bf16", "false")
    set_key(c, "data.options.image_size", "24")
    set_key(c, "objectives.contrastive.temperature", "0.1")
    assert (c.train.steps, c.train.lr, c.train.bf16) == (42, 3e-4, False)
    assert c.data.options["image_size"] == 24 and c.objectives["contrastive"]["temperature"] == 0.1


def test_unknown_key_suggests():
    with pytest.raises(OmnipatchError, match=r"unknown config key 'train.step'; did you mean 'train.steps'"):
        set_key(Config(), "train.step", "3")
    with pytest.raises(OmnipatchError, match="expects a int"):
        set_key(Config(), "train.steps", "many")


def test_yaml_roundtrip(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  modality: image\n  options: {image_size: 16}\ntrain:\n  steps: 7\nobjectives: mae+contrastive:0.25\n")
    c = load_yaml(p)
    assert c.train.steps == 7 and c.data.options == {"image_size": 16}
    assert c.objectives == {"mae": {"weight": 1.0}, "contrastive": {"weight": 0.25}}
    assert Config.from_dict(c.to_dict()).to_dict() == c.to_dict()
    (tmp_path / "bad.yaml").write_text("trian:\n  steps: 3\n")
    with pytest.raises(OmnipatchError, match="did you mean 'train'"):
        load_yaml(tmp_path / "bad.yaml")


def test_parse_objectives_errors():
    assert parse_objectives("mae") == {"mae": {"weight": 1.0}}
    with pytest.raises(OmnipatchError, match="weight must be a number"):
        parse_objectives("mae:lots")
