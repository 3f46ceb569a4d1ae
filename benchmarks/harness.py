"""Side-by-side timing: ours and a named peer measured in the same run, reported as ratios.

Each benchmark returns rows ``{"name", "ours_s", "peer_s", "peer", "ratio", "equal", ...}``
where ``ratio = peer_s / ours_s`` (> 1 means we are faster). Rows go to
``benchmarks/results/<bench>.json`` and a markdown table on stdout.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Callable

import torch

RESULTS = Path(__file__).parent / "results"


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def interleaved(fns: dict[str, Callable[[], None]], repeats: int = 5, inner: int = 1, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each function, measured in alternation so that a noisy
    neighbour on the machine slows every contender alike."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(repeats):
        for k, f in fns.items():
            sync()
            t = time.perf_counter()
            for _ in range(inner):
                f()
            sync()
            times[k].append((time.perf_counter() - t) / inner)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


def report(bench: str, rows: list[dict], columns: list[str]) -> str:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{bench}.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |\n" for r in rows)
    table = f"**{bench}** ({machine()})\n\n" + head + body
    print(table)
    return table


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)
