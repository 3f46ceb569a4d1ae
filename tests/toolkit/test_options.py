"""Typed per-modality options: one source of defaults, each with its reason; parsing by type."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import tests.plugin_signal  # noqa: F401  (registers "signal")
from omnipatch.errors import OmnipatchError
from omnipatch.modality import MODALITIES, ModalitySpec
from omnipatch.options import defaults, describe, field_type, option, parse_text, pick

BUNDLED = ("image", "video", "audio", "pointcloud", "volume", "climate", "tabular", "signal")


@dataclass(frozen=True)
class _Data:
    size: int = option(8, "small", what="a size", flag=True)
    names: list[str] | None = option(None, "None: all")
    levels: list[float] = option([1.0], "one level")
    mode: str = option("a", "the usual")
    on: bool = option(True, "on by default")
    patch: int | list[int] = option(4, "square")


def _spec(**kw) -> ModalitySpec:
    return ModalitySpec(name="toy", description="", open_dataset=lambda s, **o: [], adapter="toy",
                        adapter_kwargs=lambda d, o: {}, augment=lambda b, g, s=1.0: b, **kw)


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_modality_declares_its_options_with_reasons(name):
    spec = MODALITIES.get(name)
    assert spec.data_options is not None and spec.adapter_options is not None
    rows = spec.option_table()
    assert [o.name for o in rows] == list(spec.options)  # the options dict is derived from the dataclasses
    assert all(o.reason for o in rows), [o.name for o in rows if not o.reason]
    assert {o.name: o.default for o in rows} == dict(spec.options)
    assert set(spec.model_options) <= set(spec.options)


def test_spec_options_are_a_read_only_view_of_the_dataclass_defaults():
    spec = _spec(data_options=_Data)
    assert dict(spec.options) == defaults(_Data)
    with pytest.raises(TypeError):
        spec.options["size"] = 3  # type: ignore[index]
    with pytest.raises(OmnipatchError, match="not both"):
        _spec(data_options=_Data, options={"size": 9})
    assert dict(_spec(options={"a": 1}).options) == {"a": 1}  # a plugin with a plain dict still works


def test_list_defaults_are_not_shared_between_instances():
    a, b = _Data(), _Data()
    a.levels.append(2.0)
    assert b.levels == [1.0]


def test_pick_takes_the_fields_and_leaves_the_rest():
    o = pick(_Data, {"size": 3, "patch_size": 8, "other": 1})
    assert o.size == 3 and o.mode == "a" and o.levels == [1.0]


@pytest.mark.parametrize("name, text, value", [
    ("size", "12", 12), ("names", "tas, pr", ["tas", "pr"]), ("names", '["a","b"]', ["a", "b"]),
    ("names", "none", None), ("levels", "500,850", [500.0, 850.0]), ("mode", "b", "b"),
    ("on", "false", False), ("patch", "8", 8), ("patch", "2,8,8", [2, 8, 8])])
def test_text_is_parsed_by_the_field_type(name, text, value):
    assert parse_text(field_type(_Data, name), text, f"--{name}") == value


@pytest.mark.parametrize("name, text, message", [
    ("size", "big", "--size expects an integer, got 'big'"), ("levels", "a,b", "--levels expects a number, got 'a'"),
    ("names", "", None), ("patch", "x", "--patch: cannot parse 'x' as int | list"),
    ("on", "maybe", "--on expects true/false")])
def test_bad_text_is_one_line_naming_the_flag(name, text, message):
    if message is None:  # an optional field: empty text is None
        assert parse_text(field_type(_Data, name), text, f"--{name}") is None
        return
    with pytest.raises(OmnipatchError, match=message):
        parse_text(field_type(_Data, name), text, f"--{name}")


def test_describe_gives_type_reason_and_flag():
    size = describe(_Data)[0]
    assert (size.name, size.default, size.type, size.reason, size.what, size.flag) == (
        "size", 8, "int", "small", "a size", True)
