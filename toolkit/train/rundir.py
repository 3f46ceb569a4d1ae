"""One run per directory: a stale-aware lock, no silent reuse of a finished run's folder,
and the leftovers of a killed run (``.checkpoint-*`` temporaries) cleaned on the next start."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

from omnipatch.errors import OmnipatchError

LOCK = ".omnipatch.lock"
#: what ``pretrain`` writes into RUN_DIR; ``--overwrite`` removes exactly these
ARTEFACTS = ("checkpoint", "checkpoint.old", "metrics.jsonl", "run_config.json", "plan.json", "loss_curve.png",
             "tensorboard", "wandb", "mlflow",
             "report.md", "report.json", "init_report.json", "skipped.jsonl")
ARTEFACT_GLOBS = ("reconstruction*.png", "skipped.rank*.jsonl", ".checkpoint-*")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """``RUN_DIR/.omnipatch.lock`` holding ``{"pid", "host"}``, created exclusively.

    A lock whose process is gone (same host) is stale and taken over; a live one refuses
    the second run with one line. Released on exit, also on errors.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK
        self.held = False

    def __enter__(self) -> "RunLock":
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    other = json.loads(self.path.read_text() or "{}")
                except (ValueError, OSError):
                    other = {}
                pid, host = other.get("pid"), other.get("host")
                if isinstance(pid, int) and (host != me["host"] or _alive(pid)) and pid != me["pid"]:
                    raise OmnipatchError(f"{self.path.parent}: another run is using this directory (pid {pid} on "
                                         f"{host}); wait for it, or choose another --out "
                                         f"(remove {self.path} if that run is gone)") from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            except OSError as e:
                raise OmnipatchError(f"{self.path.parent}: cannot write to the run directory "
                                     f"({e.strerror or e})") from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise OmnipatchError(f"{self.path}: could not take the run lock")

    def __exit__(self, *exc) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def make_run_dir(out: str | Path) -> Path:
    """Create ``out`` (and parents); a file in the way or a read-only place is one line."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OmnipatchError(f"--out {out}: is a file, not a run directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OmnipatchError(f"--out {out}: cannot create the run directory ({e.strerror or e})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise OmnipatchError(f"--out {out}: the run directory is not writable")
    return out


def artefacts(out: Path) -> list[Path]:
    found = [out / n for n in ARTEFACTS if (out / n).exists()]
    for g in ARTEFACT_GLOBS:
        found += sorted(out.glob(g))
    return found


def clean_temporaries(out: Path) -> list[Path]:
    """Remove ``.checkpoint-*`` folders a killed checkpoint write left behind."""
    gone = sorted(out.glob(".checkpoint-*"))
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return gone


def prepare(out: Path, resume: bool, overwrite: bool) -> None:
    """A fresh run needs an empty directory (or ``overwrite``); ``resume`` keeps it."""
    clean_temporaries(out)
    if resume:
        return
    others = [p for p in out.iterdir() if p.name != LOCK]
    if not others:
        return
    if not overwrite:
        names = ", ".join(sorted(p.name for p in others)[:4]) + (" ..." if len(others) > 4 else "")
        raise OmnipatchError(f"{out}: the run directory is not empty ({names}); give --resume to continue "
                             f"that run, --overwrite to replace it, or another --out")
    for p in artefacts(out):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
