import pytest

from omnipatch.errors import OmnipatchError
from omnipatch.registry import Registry


def test_register_get_describe():
    r = Registry("widget")

    @r.register("alpha", "first widget")
    class A:
        pass

    r.add("beta", object(), "second")
    assert r.get("alpha") is A
    assert list(r) == ["alpha", "beta"] and "alpha" in r
    assert r.describe() == {"alpha": "first widget", "beta": "second"}


def test_unknown_name_suggests():
    r = Registry("widget")
    r.add("contrastive", 1)
    with pytest.raises(OmnipatchError, match=r"unknown widget 'contrastiv'; did you mean 'contrastive'"):
        r.get("contrastiv")


def test_duplicate_registration_rejected():
    r = Registry("widget")
    r.add("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        r.add("a", 2)


def test_builtin_registries_populated():
    from omnipatch.modality import ADAPTERS, MODALITIES, load_builtin
    from omnipatch.objectives import OBJECTIVES

    load_builtin()
    assert "image" in MODALITIES and "grid" in ADAPTERS and {"mae", "contrastive"} <= set(OBJECTIVES)


def test_default_entry_is_what_a_plugin_set_and_missing_is_one_line():
    reg = Registry("widget")
    with pytest.raises(OmnipatchError, match="no default widget is registered: name one"):
        reg.default()
    reg.add("a", object(), "first")
    reg.set_default("a")
    assert reg.default() == "a"


def test_bundled_default_modality_fills_an_empty_config():
    from omnipatch.config import Config, validate
    from omnipatch.modality import MODALITIES

    cfg = Config()
    assert cfg.data.modality == ""  # the core names no modality
    assert validate(cfg).data.modality == MODALITIES.default() == "image"


def test_demo_runs_the_default_modalitys_demo_or_says_it_has_none(monkeypatch, tmp_path, capsys):
    from omnipatch.cli import main
    from omnipatch.modality import MODALITIES

    assert MODALITIES.get(MODALITIES.default()).demo is not None  # the bundled image plugin's
    monkeypatch.setattr(MODALITIES, "_default", "tabular")  # a modality without a demo
    assert main(["demo", "--out", str(tmp_path / "d")]) == 2
    assert "the default modality 'tabular' has no demo" in capsys.readouterr().err
