"""Where a run's numbers and pictures go: ``train.loggers: [jsonl, tensorboard, wandb, mlflow]``.

Every backend takes the same calls from the engine and from ``pretrain``:

- ``scalars(step, values)``: one record per ``train.log_every`` steps: every loss term, ``lr``,
  ``grad_norm``, ``samples_per_s`` and the embedding-health monitors (``health/...``);
- ``picture(tag, png, step)``: the pictures a run draws (``loss_curve``, ``reconstruction``,
  ``report_map``), as the PNG files it wrote into the run directory;
- ``close(failed=False)`` (a run that raised is closed as failed where the backend records it).

``jsonl`` (``RUN_DIR/metrics.jsonl``) is always written: the run summary, ``--resume`` and the
loss curve read it back; the other names add a backend. Each of them is imported only when
named, and a missing package is one line at config validation, before any data is read.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

from omnipatch.errors import OmnipatchError

#: backend name -> (modules it imports, what to install)
BACKENDS: dict[str, tuple[tuple[str, ...], str]] = {
    "jsonl": ((), ""),
    "tensorboard": (("tensorboard",), "pip install tensorboard"),
    "wandb": (("wandb",), "pip install wandb"),
    "mlflow": (("mlflow", "sqlalchemy", "alembic"), "pip install mlflow-skinny sqlalchemy alembic"),
}
EXTRA = "or pip install 'omnipatch[track]' for all of them"


def check(names) -> list[str]:
    """``train.loggers`` as a list of known, installed backend names; else one line."""
    import difflib

    if isinstance(names, str):
        names = [n for n in (s.strip() for s in names.split(",")) if n]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise OmnipatchError(f"train.loggers must be a list of names ({', '.join(BACKENDS)}), got {names!r}")
    for n in names:
        if n not in BACKENDS:
            close = difflib.get_close_matches(n, list(BACKENDS), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise OmnipatchError(f"train.loggers: unknown logger {n!r} (known: {', '.join(BACKENDS)}){hint}")
        missing = [m for m in BACKENDS[n][0] if importlib.util.find_spec(m) is None]
        if missing:
            raise OmnipatchError(f"train.loggers: {n!r} needs the package(s) {', '.join(missing)}, which are not "
                                 f"installed ({BACKENDS[n][1]}, {EXTRA})")
    return list(dict.fromkeys(names))


class Loggers:
    """The backends of one run, called together. ``Loggers([])`` (other ranks) does nothing."""

    def __init__(self, backends: list):
        self.backends = backends

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for b in self.backends:
            b.scalars(step, values)

    def picture(self, tag: str, png: str | Path, step: int) -> None:
        if png and Path(png).is_file():
            for b in self.backends:
                b.picture(tag, Path(png), step)

    def close(self, failed: bool = False) -> None:
        for b in self.backends:
            b.close(failed)
        self.backends = []

    def __enter__(self) -> "Loggers":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(failed=exc_type is not None)


def open_loggers(names, run_dir: str | Path, config: dict | None = None, start: int = 0,
                 resume: bool = False, main: bool = True) -> Loggers:
    """The backends named in ``names`` (plus ``jsonl``) writing under ``run_dir``.

    A fresh run starts ``metrics.jsonl`` afresh; a resumed one (``start`` > 0) drops what was
    logged after its checkpoint, and TensorBoard purges those steps too (``purge_step``).
    ``config`` (the run's record) goes to each backend as its hyperparameters.
    """
    if not main:
        return Loggers([])
    run_dir = Path(run_dir)
    backends = [JsonlLogger(run_dir / "metrics.jsonl", start if resume else None)]
    makers = {"tensorboard": TensorBoardLogger, "wandb": WandbLogger, "mlflow": MlflowLogger}
    try:
        for n in check(names):
            if n in makers:
                backends.append(makers[n](run_dir, config or {}, start))
    except BaseException:
        Loggers(backends).close(failed=True)
        raise
    return Loggers(backends)


class JsonlLogger:
    """``metrics.jsonl``: one JSON record per logged step (``{"step": ..., **values}``)."""

    def __init__(self, path: Path, resume_at: int | None):
        self.path = path
        if resume_at is None:
            path.unlink(missing_ok=True)
        elif path.exists():
            keep = [r for r in read_metrics(path) if r["step"] <= resume_at]
            path.write_text("".join(json.dumps(r) + "\n" for r in keep))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")

    def picture(self, tag: str, png: Path, step: int) -> None:
        pass  # the PNG is already in the run directory

    def close(self, failed: bool = False) -> None:
        pass


def read_metrics(path: str | Path) -> list[dict]:
    """The records of ``metrics.jsonl``; a torn last line (a kill mid-write) is dropped."""
    p = Path(path)
    if not p.exists():
        return []
    lines = [line for line in p.read_text(errors="replace").splitlines() if line.strip()]
    out = []
    for n, line in enumerate(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            if n == len(lines) - 1:
                break
            raise OmnipatchError(f"{p}: line {n + 1} is not JSON (a corrupt metrics file)") from None
        if not isinstance(rec, dict) or "step" not in rec:
            raise OmnipatchError(f"{p}: line {n + 1} is not a metrics record")
        out.append(rec)
    return out


def _rgb(png: Path):
    """``(H, W, 3)`` uint8 array of a PNG."""
    import numpy as np
    from PIL import Image

    with Image.open(png) as im:
        return np.asarray(im.convert("RGB"))


def _flat(d: dict, prefix: str = "") -> dict[str, str]:
    """``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": "0.001"}`` (hyperparameters as text)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flat(v, key + "."))
        else:
            out[key] = json.dumps(v) if not isinstance(v, str) else v
    return out


class TensorBoardLogger:
    """``RUN_DIR/tensorboard/`` event files through ``torch.utils.tensorboard`` (view with
    ``tensorboard --logdir RUN_DIR``). Scalars keep their record names (``loss``, ``mae``,
    ``health/rankme``); pictures are images under their tag; the run config is text."""

    def __init__(self, run_dir: Path, config: dict, start: int):
        from torch.utils.tensorboard import SummaryWriter

        # a resumed run re-logs the steps after its checkpoint: TensorBoard drops the old ones
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=start + 1 if start else 0)
        if config.get("run"):
            self.writer.add_text("config", "```\n" + json.dumps(config["run"], indent=2) + "\n```", start)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def picture(self, tag: str, png: Path, step: int) -> None:
        self.writer.add_image(tag, _rgb(png), step, dataformats="HWC")
        self.writer.flush()

    def close(self, failed: bool = False) -> None:
        self.writer.close()


class WandbLogger:
    """A Weights & Biases run under ``RUN_DIR/wandb/`` (project ``$WANDB_PROJECT`` or
    ``omnipatch``, named after the run directory). W&B's own settings apply: ``WANDB_MODE=offline``
    logs locally (``wandb sync`` uploads later); online needs ``wandb login``. A resumed run
    continues the same W&B run (its id is kept in ``RUN_DIR/wandb/omnipatch_run_id``)."""

    def __init__(self, run_dir: Path, config: dict, start: int):
        import wandb

        (run_dir / "wandb").mkdir(parents=True, exist_ok=True)
        id_file = run_dir / "wandb" / "omnipatch_run_id"
        run_id = id_file.read_text().strip() if start > 0 and id_file.exists() else None  # None: a new run
        try:
            self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "omnipatch"), dir=str(run_dir),
                                  name=run_dir.resolve().name, id=run_id, resume="allow" if run_id else None,
                                  config=config.get("run") or {}, settings=wandb.Settings(console="off"))
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise OmnipatchError(f"train.loggers: wandb could not start a run ({first}); run `wandb login`, or "
                                 f"set WANDB_MODE=offline to log to {run_dir / 'wandb'}") from None
        id_file.write_text(self.run.id)
        self.wandb = wandb

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self.run.log(dict(values), step=step)

    def picture(self, tag: str, png: Path, step: int) -> None:
        self.run.log({tag: self.wandb.Image(str(png))}, step=step)

    def close(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


class MlflowLogger:
    """An MLflow run: metrics per step, the run config as parameters, pictures as artifacts
    under ``pictures/``. The tracking store is ``$MLFLOW_TRACKING_URI`` when set, else a SQLite
    store in ``RUN_DIR/mlflow/`` (``mlflow ui --backend-store-uri sqlite:///RUN_DIR/mlflow/mlflow.db``);
    the experiment is ``$MLFLOW_EXPERIMENT_NAME`` or ``omnipatch``. A resumed run continues the
    same MLflow run (its id is kept in ``RUN_DIR/mlflow/omnipatch_run_id``)."""

    def __init__(self, run_dir: Path, config: dict, start: int):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        local = run_dir.resolve() / "mlflow"
        local.mkdir(parents=True, exist_ok=True)
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{local / 'mlflow.db'}"
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "omnipatch")
        id_file = local / "omnipatch_run_id"
        try:
            self.client = MlflowClient(uri)
            if start > 0 and id_file.exists():
                self.run_id = id_file.read_text().strip()
                self.client.update_run(self.run_id, status="RUNNING")
            else:
                exp = self.client.get_experiment_by_name(name)
                exp_id = exp.experiment_id if exp else self.client.create_experiment(
                    name, artifact_location=None if os.environ.get("MLFLOW_TRACKING_URI") else (local / "artifacts").as_uri())
                self.run_id = self.client.create_run(exp_id, run_name=run_dir.resolve().name).info.run_id
                params = [Param(k, v[:6000]) for k, v in _flat(config.get("run") or {}).items()]
                for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters per call
                    self.client.log_batch(self.run_id, params=params[i:i + 100])
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise OmnipatchError(f"train.loggers: mlflow could not start a run at {uri} ({first[:300]})") from None
        id_file.write_text(self.run_id)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])

    def picture(self, tag: str, png: Path, step: int) -> None:
        self.client.log_artifact(self.run_id, str(png), artifact_path="pictures")

    def close(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


__all__ = ["BACKENDS", "Loggers", "open_loggers", "check", "read_metrics"]
