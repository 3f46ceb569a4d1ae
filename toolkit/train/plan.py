"""The data scan before training: ``omnipatch inspect``, also run by ``pretrain``.

A :class:`Plan` holds what a cheap look at the data found (``facts``: counts, sizes,
lengths, channels, value ranges, missing cells, variables) and the options that the data
decides (``fits``), each with the default it replaces and the reason, so that a default
never refuses reasonable data. The rules live with each modality (``ModalitySpec.scan``);
this module applies them, and fits what the core owns (the batch size).

Rules, in order of precedence:

1. an option the user gave (flag, YAML, ``--set``) always wins; if it cannot work the
   reader or the adapter still says so in one line;
2. otherwise the modality's scan fits it to the data (one printed line per change);
3. otherwise the modality's default applies.

The plan is printed and saved to ``RUN_DIR/plan.json``; the fitted options are written into
the run's config, so ``embed`` / ``finetune`` / ``retrieve`` read new data the same way.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omnipatch.errors import OmnipatchError
from omnipatch.modality import ModalitySpec

#: the batch size when the user gives none and the data set is large enough
DEFAULT_BATCH = 128


@dataclass
class Plan:
    """What the scan saw and what it decided. ``fits[key] = {"value", "default", "reason"}``."""

    modality: str
    source: str
    facts: dict[str, Any] = field(default_factory=dict)
    fits: dict[str, dict] = field(default_factory=dict)

    def fit(self, key: str, value: Any, default: Any, reason: str) -> None:
        self.fits[key] = {"value": value, "default": default, "reason": reason}

    def options(self) -> dict[str, Any]:
        """The fitted data options (without core keys such as ``train.batch_size``)."""
        return {k: v["value"] for k, v in self.fits.items() if "." not in k}

    def lines(self) -> list[str]:
        """Human-readable: one line of facts, then one line per fitted default."""
        facts = ", ".join(f"{k} {_short(v)}" for k, v in self.facts.items())
        out = [f"scan of {self.source} ({self.modality}): {facts or 'no facts'}"]
        for k, v in self.fits.items():
            out.append(f"plan: {k} = {_short(v['value'])} (default {_short(v['default'])}): {v['reason']}")
        return out

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(asdict(self), indent=2, default=str))
        return p


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)) and len(v) > 8:
        return f"[{', '.join(map(str, v[:8]))}, ... ({len(v)})]"
    return str(v)


def scan(spec: ModalitySpec, source, options: dict) -> Plan:
    """Run the modality's scan on ``source``; ``options`` are the user's explicit options,
    which the scan never overrides."""
    if not source:
        raise OmnipatchError("no data source given (--data SRC)")
    plan = Plan(spec.name, str(source))
    if spec.scan is None:
        return plan
    facts, fits = spec.scan(source, {**spec.options, **options}, set(options))
    plan.facts.update(facts)
    for key, (value, reason) in fits.items():
        if key in options:  # an explicit option always wins
            continue
        default = spec.options.get(key)
        if value != default:
            plan.fit(key, value, default, reason)
    return plan


def fit_batch_size(plan: Plan | None, requested: int, n: int | None, world: int = 1, grad_accum: int = 1) -> int:
    """The batch size for ``n`` samples (``None``: a stream of unknown length).

    ``requested > 0`` is the user's and is kept (the engine refuses one that cannot work, in
    one line); ``0`` means "fit it": :data:`DEFAULT_BATCH`, or the largest batch the data set
    fills once per step over ``world`` ranks and ``grad_accum`` micro-batches (recorded in
    ``plan`` when one is given).
    """
    if requested > 0:
        return requested
    if n is None:
        return DEFAULT_BATCH
    per = n // max(1, world * grad_accum)
    if per >= DEFAULT_BATCH:
        return DEFAULT_BATCH
    if per < 2:
        where = plan.source if plan is not None else "the data set"
        raise OmnipatchError(f"{where}: {n} readable sample(s); training needs at least "
                             f"{2 * world * grad_accum} (2 per micro-batch)")
    if plan is None:
        return per
    plan.fit("train.batch_size", per, DEFAULT_BATCH,
             f"the data set has {n} samples, fewer than {DEFAULT_BATCH * world * grad_accum}: "
             f"each step sees {'all of them' if per * world * grad_accum == n else f'{per * world * grad_accum} of them'}")
    return per


#: files a scan looks at: evenly spaced over the data set
SCAN_FILES = 64


def read_evenly(entries: list, read, facts: dict, k: int = SCAN_FILES) -> list[tuple]:
    """``[(entry, read(entry))]`` for up to ``k`` evenly spaced ``entries``; a file that cannot
    be read (a :class:`~omnipatch.errors.BadSampleError`, or any library error, named with the
    file) is counted in ``facts`` (``scanned``, ``unreadable``, ``first unreadable``) instead."""
    from omnipatch.errors import BadSampleError

    picked = [entries[i] for i in evenly(len(entries), k)]
    good, bad = [], []
    for e in picked:
        try:
            good.append((e, read(e)))
        except BadSampleError as err:
            bad.append(f"{err.source}: {err.reason}")
        except Exception as err:  # a library failed on the header: the scan goes on
            bad.append(f"{e.path}: {type(err).__name__}: {err}")
    facts["scanned"] = len(picked)
    if bad:
        facts["unreadable"] = len(bad)
        facts["first unreadable"] = bad[0]
    return good


def evenly(n: int, k: int) -> list[int]:
    """Up to ``k`` evenly spaced indices of ``range(n)`` (what a scan looks at)."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]
