"""Run every ``benchmarks/bench_*.py`` and collect their tables in ``results/summary.md``.

Each module's ``main()`` times ours against a named peer in the same run and writes its own
``results/<bench>.json``; this runner captures the markdown tables they print and puts them
under one header that says on what machine, when, and under what load they were measured
(ratios are robust to a busy machine because contenders alternate; absolute times are not).

Run: ``python -m benchmarks.run [--quick] [--only masking,points]`` (``make bench``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import inspect
import io
import os
import sys
import time
import traceback
from pathlib import Path

import torch

from benchmarks.harness import RESULTS, machine

HERE = Path(__file__).parent


def discover() -> list[str]:
    """Names of the benchmark modules, ``bench_`` prefix stripped, sorted."""
    return sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py"))


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, s: str) -> int:
        for st in self.streams:
            st.write(s)
        return len(s)

    def flush(self) -> None:
        for st in self.streams:
            st.flush()


def _call(mod, quick: bool):
    """Call ``mod.main`` with what its signature takes: ``argv`` (``--quick`` when the module
    understands it) or ``repeats`` (1 when quick), else nothing."""
    params = inspect.signature(mod.main).parameters
    if "argv" in params:
        return mod.main(["--quick"] if quick and "--quick" in inspect.getsource(mod) else [])
    if "repeats" in params and quick:
        return mod.main(repeats=1)
    return mod.main()


def run_one(name: str, quick: bool) -> tuple[str, float, str | None]:
    """``(captured stdout, seconds, error or None)`` of one benchmark."""
    buf = io.StringIO()
    t = time.perf_counter()
    err = None
    with contextlib.redirect_stdout(_Tee(sys.stdout, buf)):
        try:
            _call(importlib.import_module(f"benchmarks.bench_{name}"), quick)
        except Exception as e:  # one failing benchmark must not hide the others
            err = f"{type(e).__name__}: {e}"
            traceback.print_exc(file=sys.stderr)
    return buf.getvalue(), time.perf_counter() - t, err


def tables(text: str) -> str:
    """The markdown of a benchmark's output: title lines (``**name**``) and table rows."""
    keep = [ln for ln in text.splitlines() if ln.startswith(("**", "|")) or not ln.strip()]
    out, blank = [], False
    for ln in keep:  # collapse runs of blank lines
        if ln.strip() or not blank:
            out.append(ln)
        blank = not ln.strip()
    return "\n".join(out).strip()


def header(quick: bool) -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    dev = (f"GPU {torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}" if torch.cuda.is_available()
           else f"CPU only, {os.cpu_count()} logical cores")
    return (
        f"# Benchmarks{' (quick)' if quick else ''}\n\n"
        f"- when: {datetime.datetime.now().isoformat(timespec='seconds')}\n"
        f"- machine: {machine()}; {dev}\n"
        f"- load average at start: {', '.join(f'{x:.1f}' if isinstance(x, float) else x for x in load)} "
        "(contenders alternate, so ratios stay fair on a busy machine; absolute times do not)\n"
        "- ratio = peer time / our time (> 1: we are faster); `equal` is the equivalence check\n"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="pass --quick / fewer repeats to each benchmark")
    ap.add_argument("--only", default="", help="comma-separated names, e.g. masking,points")
    a = ap.parse_args(argv)
    names = discover()
    if a.only:
        wanted = [n.strip().removeprefix("bench_") for n in a.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            ap.error(f"unknown benchmark(s) {unknown}; available: {names}")
        names = list(dict.fromkeys(wanted))  # in the order asked
    parts, failed = [header(a.quick)], []
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("summary_quick.md" if a.quick else "summary.md")
    for name in names:
        print(f"\n=== bench_{name} ===", flush=True)
        text, secs, err = run_one(name, a.quick)
        body = tables(text) or "(no table printed)"
        if err:
            failed.append(name)
            body += f"\n\nFAILED after {secs:.0f} s: {err}"
        parts.append(f"## bench_{name} ({secs:.0f} s)\n\n{body}\n")
        out.write_text("\n".join(parts))  # after each one: a killed run keeps what finished
    print(f"\nwrote {out}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
