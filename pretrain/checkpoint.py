"""Atomic training checkpoints: model, optimizer, scheduler, RNG states and data position.

A checkpoint is one ``torch.save`` file written to a temporary name and renamed, so a
crash mid-write leaves the previous checkpoint intact.

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> atomic_save({"step": 3}, d / "last.pt"); torch.load(d / "last.pt")["step"]
3
"""

from __future__ import annotations

import os
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


def rng_states() -> dict[str, Any]:
    """All global RNG states that training may touch."""
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` captured."""
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
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
    # weights_only=False: the file holds RNG states (numpy/python tuples) we wrote ourselves.
    state = torch.load(path, map_location=map_location, weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_states(state["rng"])
    return Position(**state["position"])


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The raw checkpoint dict (for export), loaded on CPU."""
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=False)
