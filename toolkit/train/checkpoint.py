"""Checkpoints: safetensors weights + JSON config + optimiser/scheduler/RNG state.

A checkpoint is a folder ``RUN_DIR/checkpoint/``:

- ``model.safetensors`` weights (no pickle);
- ``config.json`` the run config and the model's architecture config;
- ``train_state.pt`` optimiser, scheduler, step and RNG state, loaded with
  ``weights_only=True`` (plain tensors and containers; never arbitrary objects).

Writes are atomic: everything goes to a temporary sibling folder, which then replaces the
old checkpoint by ``rename``; a crash at any moment leaves a complete checkpoint (the old
one at worst, kept as ``checkpoint.old`` until the swap finishes).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from omnipatch.errors import OmnipatchError

CKPT = "checkpoint"


def _state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses shared storage; contiguous clones are cheap at our sizes
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
            "python_version": random.getstate()[0], "python_gauss": random.getstate()[2]}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))


def save(run_dir: str | Path, model: torch.nn.Module | dict, config: dict, train_state: dict | None = None) -> Path:
    """Atomically write ``run_dir/checkpoint`` (``model``: a module or a full state dict)."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".checkpoint-", dir=run_dir))
    except OSError as e:
        raise _write_error(run_dir, e) from None
    try:
        state = _state_dict(model) if isinstance(model, torch.nn.Module) else {
            k: v.detach().contiguous().clone() for k, v in model.items()}
        save_file(state, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        if train_state is not None:
            torch.save(train_state, tmp / "train_state.pt")
        mask = _umask()
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700: the user's umask decides, as for any folder
        for f in tmp.iterdir():  # data on disk before the rename makes it visible
            os.chmod(f, 0o666 & ~mask)
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        final, old = run_dir / CKPT, run_dir / (CKPT + ".old")
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, (OSError, RuntimeError)) and not isinstance(e, OmnipatchError):
            raise _write_error(run_dir, e) from None
        raise
    return final


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_error(run_dir: Path, e: BaseException) -> OmnipatchError:
    """One line for a failed checkpoint write: a full disk says so (torch says ``enforce fail at
    inline_container.cc``), a read-only folder too."""
    import errno

    code = getattr(e, "errno", None)
    try:
        free = shutil.disk_usage(run_dir if run_dir.exists() else run_dir.parent).free
    except OSError:
        free = None
    if code in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(e) or (
            isinstance(e, RuntimeError) and free is not None and free < (64 << 20)):
        return OmnipatchError(f"no space left on the device holding {run_dir} (writing the checkpoint); "
                              f"free some space and --resume")
    if code in (errno.EACCES, errno.EROFS, errno.EPERM):
        return OmnipatchError(f"{run_dir}: cannot write the checkpoint ({os.strerror(code)})")
    msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
    return OmnipatchError(f"{run_dir}: cannot write the checkpoint ({msg})")


def find(run_dir: str | Path) -> Path:
    """The checkpoint folder of a run (or the folder itself), falling back to ``.old``."""
    p = Path(run_dir)
    for cand in (p / CKPT, p, p / (CKPT + ".old")):
        if (cand / "model.safetensors").is_file() and (cand / "config.json").is_file():
            return cand
    raise OmnipatchError(f"{run_dir}: no checkpoint (expected {p / CKPT}/model.safetensors and config.json)")


def content_hash(run_dir: str | Path) -> str:
    """SHA-256 of the checkpoint's weights file: what an artefact built from it records."""
    import hashlib

    h = hashlib.sha256()
    with open(find(run_dir) / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_config(run_dir: str | Path) -> dict:
    path = find(run_dir) / "config.json"
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise OmnipatchError(f"{path}: corrupt config ({e})") from None


def load_state(run_dir: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a checkpoint as a state dict."""
    path = find(run_dir) / "model.safetensors"
    try:
        return load_file(str(path))
    except Exception as e:
        raise OmnipatchError(f"{path}: cannot read weights ({e})") from None


def load_weights(run_dir: str | Path, model: torch.nn.Module, strict: bool = True) -> None:
    path = find(run_dir) / "model.safetensors"
    state = load_state(run_dir)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if strict and (missing or unexpected):
        raise OmnipatchError(f"{path}: weights do not match the model (missing {missing[:5]}, unexpected {unexpected[:5]})")


def load_train_state(run_dir: str | Path) -> dict | None:
    path = find(run_dir) / "train_state.pt"
    if not path.is_file():
        return None
    return safe_torch_load(path)


def safe_torch_load(path: str | Path):
    """``torch.load(weights_only=True)``; a file that is truncated, corrupt, or holds anything
    but tensors and plain containers is one line (never torch's advice to unpickle it)."""
    import pickle
    import zipfile

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).split("In PyTorch 2.6")[0].replace("Weights only load failed.", "").strip()
        detail = next((ln.strip() for ln in str(e).splitlines() if ln.strip().startswith("Unsupported")), first)
        raise OmnipatchError(f"{path}: refused: it holds objects other than tensors and plain containers "
                             f"(never unpickled){f' ({detail[:160]})' if detail else ''}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as e:
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise OmnipatchError(f"{path}: truncated or corrupt ({msg})") from None
