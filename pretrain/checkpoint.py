"""Atomic training checkpoints: model, optimizer, scheduler, RNG states and data position.

A checkpoint is one ``torch.save`` file written to a temporary name and renamed, so a
crash mid-write leaves the previous checkpoint intact.  It holds only tensors and plain
Python values (the numpy and Python RNG states as a tensor and lists), so it is read
back with ``torch.load(weights_only=True)``: a crafted file cannot run code on
``--resume`` or ``pretrain export`` (:func:`safe_load` refuses it with a message).

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> atomic_save({"step": 3}, d / "last.pt"); safe_load(d / "last.pt")["step"]
3
"""

from __future__ import annotations

import os
import pickle
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

CHECKPOINT_NAME = "last.pt"


@dataclass(slots=True)
class Position:
    """Where training stands: optimizer steps done and the data stream position."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` via a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class UnsafeFileError(ValueError):
    """A file that cannot be loaded without running code from it (or is not ours at all)."""


def safe_load(path: Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on CPU; a refused file is a one-line error."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln), lines[-1] if lines else "")
        raise UnsafeFileError(
            f"refused to load {path}: it is not a {what} that loads without running code from it "
            f"({reason[:160]})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise UnsafeFileError(f"cannot read {what} {path}: {str(exc).splitlines()[0][:200]}") from None


def _numpy_state() -> dict[str, Any]:
    state = np.random.get_state(legacy=False)
    return {"bit_generator": state["bit_generator"], "key": torch.from_numpy(state["state"]["key"].astype(np.int64)),
            "pos": int(state["state"]["pos"]), "has_gauss": int(state["has_gauss"]), "gauss": float(state["gauss"])}


def _set_numpy_state(s: dict[str, Any]) -> None:
    np.random.set_state({"bit_generator": s["bit_generator"], "has_gauss": s["has_gauss"], "gauss": s["gauss"],
                         "state": {"key": s["key"].numpy().astype(np.uint32), "pos": s["pos"]}})


def rng_states() -> dict[str, Any]:
    """All global RNG states that training may touch, as tensors and plain lists."""
    version, internal, gauss_next = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(),
        "python": [version, list(internal), gauss_next],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` captured."""
    torch.set_rng_state(states["torch"])
    _set_numpy_state(states["numpy"])
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, position: Position, config: dict[str, Any]) -> Path:
    """Write ``RUN/checkpoints/last.pt`` atomically; returns its path."""
    path = run_dir / "checkpoints" / CHECKPOINT_NAME
    atomic_save({
        "position": asdict(position),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_states(),
        "config": config,
    }, path)
    return path


def load_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, map_location: str | torch.device = "cpu") -> Position:
    """Restore a run from ``RUN/checkpoints/last.pt``; returns the saved position.

    Raises
    ------
    FileNotFoundError
        With a clear message when the run has no checkpoint to resume from.
    """
    path = run_dir / "checkpoints" / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint to resume from: {path} does not exist")
    state = read_checkpoint(path)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_states(state["rng"])
    return Position(**state["position"])


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint dict, loaded on CPU with ``weights_only=True`` and its keys checked.

    Raises
    ------
    UnsafeFileError
        For a file that needs code to load, or lacks a checkpoint's parts.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    state = safe_load(path)
    missing = [k for k in _KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise UnsafeFileError(f"{path} is not a pretrain checkpoint (missing {', '.join(missing)})")
    return state


_KEYS = ("position", "model", "optimizer", "scheduler", "rng", "config")
