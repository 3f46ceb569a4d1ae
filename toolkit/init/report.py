"""What an initialisation loaded: one row per tensor, a printed table and ``init_report.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

STATUSES = ("loaded", "resampled", "new", "ignored")


@dataclass
class InitReport:
    """Rows ``{"name", "status", "shape", "detail"}``; ``status`` is ``loaded`` (copied as is),
    ``resampled`` (adapted by a rule of :mod:`omnipatch.init.adapt`), ``new`` (newly
    initialised) or ``ignored`` (a source tensor the model does not use)."""

    source: str
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, status: str, shape=None, detail: str = "") -> None:
        assert status in STATUSES, status
        self.rows.append({"name": name, "status": status, "shape": list(shape) if shape is not None else None,
                          "detail": detail})

    def names(self, status: str) -> list[str]:
        return [r["name"] for r in self.rows if r["status"] == status]

    def counts(self) -> dict[str, int]:
        return {s: len(self.names(s)) for s in STATUSES}

    def to_dict(self) -> dict:
        return {"source": self.source, "counts": self.counts(), "notes": self.notes, "tensors": self.rows}

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    def table(self, limit: int = 12) -> str:
        """A short text table: counts per status, then the tensors that were not loaded as is."""
        lines = [f"init from {self.source}", f"  {'status':<10} {'tensors':>7}  {'values':>10}"]
        for s in STATUSES:
            rows = [r for r in self.rows if r["status"] == s]
            n = sum(_numel(r["shape"]) for r in rows)
            lines.append(f"  {s:<10} {len(rows):>7}  {n:>10,}")
        for s in ("resampled", "new", "ignored"):
            groups: dict[tuple[str, str], list[dict]] = {}
            for r in self.rows:
                if r["status"] == s:  # one line per (module, reason), e.g. "decoder.* (30 tensors)"
                    groups.setdefault((r["name"].split(".")[0], r["detail"]), []).append(r)
            for (prefix, detail), rows in list(groups.items())[:limit]:
                what = (f"{rows[0]['name']} {tuple(rows[0]['shape'] or ())}" if len(rows) == 1
                        else f"{prefix}.* ({len(rows)} tensors)")
                lines.append(f"  {s}: {what}" + (f" -- {detail}" if detail else ""))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _numel(shape) -> int:
    n = 1
    for s in shape or ():
        n *= int(s)
    return n if shape else 0
