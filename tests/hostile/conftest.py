"""Hostile-input suite: helpers to run the CLI in-process and check the error contract."""

from __future__ import annotations

import pytest

from omnipatch.cli import main

TINY = ["--preset", "micro", "--set", "model.decoder_dim=32", "--set", "train.monitor_every=0", "--quiet"]


class Result:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def one_error_line(self, *needles: str) -> str:
        """Assert exit 2 and exactly one ``omnipatch: error:`` line holding every needle."""
        lines = [x for x in self.err.strip().splitlines() if x.strip()]
        assert self.code == 2, (self.code, self.out, self.err)
        assert "Traceback" not in self.err, self.err
        assert len(lines) == 1 and lines[0].startswith("omnipatch: error:"), self.err
        for n in needles:
            assert n in lines[0], (n, lines[0])
        return lines[0]


@pytest.fixture
def cli(capsys):
    def run(*args) -> Result:
        code = main([str(a) for a in args])
        c = capsys.readouterr()
        return Result(code, c.out, c.err)
    return run


@pytest.fixture
def pretrained(png_folder, tmp_path_factory):
    """A 2-step micro image run on the 24 PNGs (run dir path)."""
    run = tmp_path_factory.mktemp("run") / "run"
    assert main(["pretrain", "--modality", "image", "--data", str(png_folder / "manifest.csv"), "--out", str(run),
                 "--steps", "2", "--batch-size", "8", "--set", "data.options.image_size=16", *TINY]) == 0
    return run
