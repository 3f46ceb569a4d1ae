"""The training progress bar: tqdm on a terminal, plain lines (no carriage returns) in logs."""

from __future__ import annotations

import io

from omnipatch.train.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_terminal_prints_one_line_every_n_steps_and_at_the_end():
    out = io.StringIO()
    p = Progress(total=23, start=0, every=10, file=out)
    for step in range(1, 24):
        p.update(step, f"loss {1 / step:.4f}")
    p.write("warning: step 23: a message")
    p.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [line.split()[1] for line in lines[:3]] == ["10/23", "20/23", "23/23"]
    assert lines[0].startswith("step 10/23 [") and ("step/s" in lines[0] or "s/step" in lines[0])
    assert lines[2].endswith("loss 0.0435]")
    assert lines[3] == "warning: step 23: a message"


def test_resumed_run_counts_from_its_start_and_the_total_can_change():
    out = io.StringIO()
    p = Progress(total=1000, start=40, every=5, file=out)
    p.total = 50  # a budgeted run sizes itself after a few steps
    p.update(45, "x")
    p.update(50, "y")
    assert [line.split()[1] for line in out.getvalue().splitlines()] == ["45/50", "50/50"]


def test_quiet_prints_no_progress_but_still_warnings():
    out = io.StringIO()
    p = Progress(total=10, start=0, every=1, enabled=False, file=out)
    p.update(10, "loss 1")
    p.write("warning: collapse")
    assert out.getvalue() == "warning: collapse\n"


def test_terminal_gets_a_tqdm_bar_with_the_losses():
    out = _Terminal()
    p = Progress(total=4, start=0, every=100, file=out)
    for step in range(1, 5):
        p.update(step, f"loss {step}.0000")
    p.close()
    text = out.getvalue()
    assert "\r" in text  # redrawn in place
    assert "4/4" in text and "loss 4.0000" in text and "100%" in text
