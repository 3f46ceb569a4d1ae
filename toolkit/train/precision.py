"""Training precision chosen by measurement: ``train.precision = auto | bf16 | fp16 | fp32``.

Whether bf16 autocast pays on a CPU depends on the chip, not on the code: with AMX (or
avx512_bf16 on recent AMD cores) a bf16 matmul runs ~2x fp32; on a Xeon with avx512_bf16 but
no AMX it ran at 0.7x, and a bf16 MAE step at 0.63x of fp32. So ``auto`` times a short probe
(an MLP block forward + backward at a ViT-like width, fp32 vs bf16 autocast, alternated) once
per machine and caches the figures, keyed by CPU model, thread count and torch version, in
``$OMNIPATCH_CACHE_DIR`` or ``$XDG_CACHE_HOME/omnipatch`` (default ``~/.cache/omnipatch``).
CUDA uses bf16 where the device supports it, else fp16 with loss scaling. The same probe
measures where SDPA's flash kernel overtakes the explicit attention on this CPU (see
:mod:`omnipatch.layers.attention`). The choice and the figures go to ``RUN_DIR/precision.json``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from omnipatch.config import PRECISIONS
from omnipatch.errors import OmnipatchError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
PROBE_VERSION = 2
# bf16 must beat fp32 by this factor: a tie keeps the exact dtype
BF16_MARGIN = 0.95
# attention probe: lengths tried, in tokens; the crossover is the first where SDPA is at least
# 10 % faster (the explicit path's memory is bounded separately, layers.attention.EXPLICIT_MAX_BYTES)
ATTN_LENGTHS = (128, 256, 512, 1024)
SDPA_MARGIN = 0.9


@dataclass
class Precision:
    """The chosen precision of a run: ``name`` (bf16 / fp16 / fp32), how it was chosen and the
    probe's figures (milliseconds per probe step, ``bf16_speedup`` = fp32 / bf16 time)."""

    name: str
    requested: str
    device: str
    reason: str
    probe: dict = field(default_factory=dict)

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    def autocast(self):
        """The autocast context of a training step (a no-op in fp32)."""
        if self.name == "fp32":
            return nullcontext()
        return torch.autocast(self.device, dtype=self.dtype)

    def scaler(self) -> "torch.amp.GradScaler":
        """Loss scaling: on for fp16 only (bf16 has fp32's exponent range)."""
        return torch.amp.GradScaler(self.device, enabled=self.name == "fp16")

    def to_dict(self) -> dict:
        return asdict(self)


def check_name(name: str, key: str = "train.precision") -> str:
    if name not in PRECISIONS:
        raise OmnipatchError(f"config key {key!r} must be one of {', '.join(PRECISIONS)}, got {name!r}")
    return name


def cache_dir() -> Path:
    if os.environ.get("OMNIPATCH_CACHE_DIR"):
        return Path(os.environ["OMNIPATCH_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "omnipatch"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key() -> str:
    return f"{cpu_model()} | {torch.get_num_threads()} threads | torch {torch.__version__} | probe v{PROBE_VERSION}"


def _min_ms(fns: dict, repeats: int = 5) -> dict:
    """Fastest of ``repeats`` alternated calls, in ms: a busy neighbour only ever adds time."""
    for f in fns.values():
        f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: 1e3 * min(v) for k, v in times.items()}


def _mlp_step(dtype: torch.dtype, tokens: int = 1024, dim: int = 192):
    g = torch.Generator().manual_seed(0)
    w1 = (torch.randn(4 * dim, dim, generator=g) * dim**-0.5).requires_grad_()
    w2 = (torch.randn(dim, 4 * dim, generator=g) * dim**-0.5).requires_grad_()
    x = torch.randn(tokens, dim, generator=g)
    ctx = (lambda: torch.autocast("cpu", dtype=dtype)) if dtype != torch.float32 else nullcontext

    def f():
        with ctx():
            y = torch.nn.functional.linear(torch.nn.functional.gelu(torch.nn.functional.linear(x, w1)), w2)
        y.float().square().mean().backward()
        w1.grad = w2.grad = None

    return f


def _attn_step(impl: str, n: int, dtype: torch.dtype, tokens: int = 2048, heads: int = 2, dh: int = 64):
    from omnipatch.layers.attention import attention

    b = max(1, tokens // n)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(b, heads, n, dh, generator=g, dtype=dtype).requires_grad_() for _ in range(3))

    def f():
        attention(q, k, v, None, impl).float().sum().backward()
        q.grad = k.grad = v.grad = None

    return f


def probe_cpu(repeats: int = 5) -> dict:
    """Time the probes on this CPU now (about a second): ``fp32_ms``, ``bf16_ms``,
    ``bf16_speedup`` and, per dtype, the attention crossover length."""
    t = _min_ms({"fp32": _mlp_step(torch.float32), "bf16": _mlp_step(torch.bfloat16)}, repeats)
    out = {"fp32_ms": round(t["fp32"], 3), "bf16_ms": round(t["bf16"], 3),
           "bf16_speedup": round(t["fp32"] / t["bf16"], 3), "attention": {}}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        rows, cross = {}, None
        for n in ATTN_LENGTHS:
            r = _min_ms({"explicit": _attn_step("explicit", n, dtype), "sdpa": _attn_step("sdpa", n, dtype)},
                           3)
            rows[n] = {k: round(v, 3) for k, v in r.items()}
            if r["sdpa"] <= SDPA_MARGIN * r["explicit"]:
                cross = n
                break
        out["attention"][name] = {"crossover": cross or 2 * ATTN_LENGTHS[-1], "ms": rows}
    return out


def machine_profile(refresh: bool = False, measure: bool = True) -> tuple[dict, bool]:
    """The probe figures of this machine, from the cache or (``measure``) measured now:
    ``(figures, cached)``; ``({}, False)`` when not cached and not measured."""
    path = cache_dir() / "machine_profile.json"
    key = machine_key()
    try:
        table = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        table = {}
    if key in table and not refresh:
        return table[key], True
    if not measure:
        return {}, False
    figures = probe_cpu()
    figures["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    loadavg = getattr(os, "getloadavg", None)  # not on every OS
    figures["load_avg"] = [round(x, 2) for x in loadavg()] if loadavg else None
    table[key] = figures
    try:  # a read-only home must not stop a run: the figures are then simply not cached
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(table, indent=1))
        tmp.replace(path)
    except OSError:
        pass
    return figures, False


def resolve(requested: str, device: torch.device | str, run_dir: str | Path | None = None,
            write: bool = True, resume: bool = False) -> Precision:
    """Choose the precision for ``device``; apply the attention crossover the probe measured;
    write ``run_dir/precision.json`` when given (and ``write``: rank 0). Under
    torch.distributed, rank 0's probe decides. ``resume``: an ``auto`` run keeps the precision
    it started with (``run_dir/precision.json``), so it continues exactly on any machine."""
    check_name(requested)
    before = Path(run_dir) / "precision.json" if run_dir is not None else None
    dev = torch.device(device).type
    probe: dict = {}
    if dev == "cpu":  # explicit precisions use cached figures only (no probe run for them)
        probe, cached = _decide_on_rank0(measure=requested == "auto")
        if probe:
            probe = dict(probe, cached=cached)
            from omnipatch.layers.attention import set_cpu_crossover

            set_cpu_crossover({DTYPES[k]: v["crossover"] for k, v in probe.get("attention", {}).items()})
    if requested == "auto" and resume and before is not None and before.is_file():
        name, reason = json.loads(before.read_text())["name"], "resumed: the precision this run started with"
    elif requested != "auto":
        name, reason = requested, "requested"
    elif dev == "cuda":
        name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        reason = "CUDA: bf16 supported" if name == "bf16" else "CUDA without bf16: fp16 with loss scaling"
    elif dev == "cpu":
        fast = probe["bf16_ms"] < BF16_MARGIN * probe["fp32_ms"]
        name = "bf16" if fast else "fp32"
        reason = (f"probe: bf16 {probe['bf16_speedup']:.2f}x fp32 "
                  f"({'>' if fast else '<='} {1 / BF16_MARGIN:.2f}x needed)")
    else:
        name, reason = "fp32", f"{dev}: no measured bf16 path"
    p = Precision(name, requested, dev, reason, probe)
    if before is not None and write:
        before.parent.mkdir(parents=True, exist_ok=True)
        before.write_text(json.dumps(dict(p.to_dict(), machine=machine_key()), indent=1))
    return p


def _decide_on_rank0(measure: bool) -> tuple[dict, bool]:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return machine_profile(measure=measure)
    box = [machine_profile(measure=measure) if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
