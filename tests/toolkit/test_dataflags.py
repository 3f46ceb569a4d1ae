"""Data flags built from the registered modalities' typed options, and ``omnipatch list``."""

from __future__ import annotations

import pytest

import tests.plugin_signal  # noqa: F401  (registers "signal", whose DataOptions mark ``length`` a flag)
from omnipatch.cli import build_parser, main
from omnipatch.cli.dataflags import data_options, flag_table
from omnipatch.modality import MODALITIES

COMMANDS = {
    "pretrain": ["pretrain", "--out", "r"],
    "embed": ["embed", "--checkpoint", "r", "--data", "d", "--out", "e.parquet"],
    "inspect": ["inspect", "d", "--modality", "image"],
    "finetune": ["finetune", "--checkpoint", "r", "--data", "d", "--labels", "l.csv", "--task", "classification",
                 "--out", "f"],
    "retrieve index": ["retrieve", "index", "--checkpoint", "r", "--modality", "image", "--data", "d", "--out", "i"],
    "retrieve query": ["retrieve", "query", "--index", "i", "--modality", "image", "--data", "d", "--out", "q.csv"],
}


def test_the_flags_come_from_the_modalities():
    table = flag_table()
    assert {n: [s.modality for s in srcs] for n, srcs in table.items()} == {
        "variables": ["climate"], "levels": ["climate"], "id_column": ["tabular"], "label_column": ["tabular"],
        "length": ["signal"]}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_data_reading_command_has_them_parsed_by_type(command):
    a = build_parser().parse_args(COMMANDS[command] + ["--variables", "tas, pr", "--levels", "500,850",
                                                       "--id-column", "id", "--label-column", "y",
                                                       "--length", "32"])
    assert data_options(a) == {"variables": ["tas", "pr"], "levels": [500.0, 850.0], "id_column": "id",
                               "label_column": "y", "length": 32}


def test_the_help_names_the_modality(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["embed", "--help"])
    out = capsys.readouterr().out
    assert "climate: comma-separated variable names" in out
    assert "tabular: the id column (not a feature)" in out
    assert "signal: samples per signal" in out


def test_a_bad_flag_value_is_one_line(capsys):
    code = main(COMMANDS["inspect"] + ["--length", "long"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "omnipatch: error: --length expects an integer, got 'long'"


def test_a_plugin_flag_reaches_the_run_record(tmp_path, capsys):
    from omnipatch.runspec import RunSpec
    from tests.plugin_signal.modality import example

    data = tmp_path / "data"
    data.mkdir()
    code = main(["pretrain", "--modality", "signal", "--data", example(data), "--out", str(tmp_path / "run"),
                 "--length", "32", "--preset", "micro", "--steps", "1", "--batch-size", "4", "--quiet",
                 "--set", "model.decoder_dim=32"])
    assert code == 0, capsys.readouterr().err
    spec = RunSpec.from_dir(tmp_path / "run")
    assert spec.options_for("signal")["length"] == 32 and spec.data_options("signal").length == 32


def test_list_prints_every_option_with_its_reason(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in MODALITIES:
        for o in MODALITIES.get(name).option_table():
            assert o.name in out and o.reason in out, (name, o.name)


def test_list_one_modality_prints_its_table(capsys):
    assert main(["list", "climate"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("climate: ")
    for o in MODALITIES.get("climate").option_table():
        assert o.name in out and o.reason in out and o.type in out
    assert "[flag --variables]" in out and "[flag --levels]" in out
    assert "baked into a trained model: variables, levels, patch_size, time_patch" in out


def test_list_an_unknown_modality_says_did_you_mean(capsys):
    assert main(["list", "climat"]) == 2
    assert "climate" in capsys.readouterr().err
