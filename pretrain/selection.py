"""What a run selects from a build's manifest, said at start, and waiting for a running build.

:func:`describe` is the start-up line of ``pretrain``: rows, subjects and datasets
the manifest holds, what each filter of ``[data]`` dropped, and what is left (before
the train/validation split).  :func:`wait_for_images` is ``pretrain --follow``'s
wait for a build that has not written arrays yet.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import manifests
from manifests.building import build_running
from manifests.filters import Counts, explain

from pretrain.config import DataConfig, PretrainError


def _short(c: Counts) -> str:
    return f"{c.rows}/{c.subjects}/{c.datasets}"


def describe(output: Path, data: DataConfig) -> str:
    """One line: the selection's counts, filter by filter (rows/subjects/datasets dropped)."""
    try:
        table = manifests.read_table(Path(output) / "manifests")
    except (OSError, ValueError) as exc:
        return f"selection: the manifest cannot be read ({exc})"
    selection = dataclasses.replace(data.selection(), require_array=True)
    before, kept, dropped = explain(table, selection)
    parts = [f"{reason} {_short(c)}" for reason, c in dropped if c.rows]
    note = f"; dropped (rows/subjects/datasets): {', '.join(parts)}" if parts else ""
    return f"selection: {before} in the manifest -> kept {kept}{note}; balance {_balance(data)}"


def _balance(data: DataConfig) -> str:
    return data.balance if data.balance == "image" else f"{data.balance} (alpha {data.balance_alpha:g})"


def _from_rank0(value: Any) -> Any:
    """``value`` as rank 0 has it (itself without an initialised process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return value


def wait_for_images(output: Path, make: Callable[[], Any], has_images: Callable[[Any], bool],
                    poll_s: float = 10.0, say: Callable[[str], None] | None = None) -> Any:
    """Call ``make()`` until ``has_images`` of its result holds, while a build may still come.

    It waits while OUTPUT or its manifest does not exist yet (a build about to start)
    or while a build holds OUTPUT's lock; a finished build with nothing to train on
    is an error, as without ``--follow``.
    """
    say = say or (lambda m: print(m, file=sys.stderr))
    said = False
    while True:
        # asked before reading, as in CropDataset; under DDP rank 0 decides for all ranks,
        # so that every rank calls ``make()`` (a collective: it broadcasts the entries) alike
        running, exists = _from_rank0((build_running(output), (Path(output) / "manifests").is_dir()))
        if exists:
            made = make()
            if has_images(made):
                return made
            if not running:
                raise PretrainError(f"no images to pre-train on in {output}, and no build is running")
        if not said:
            say(f"pretrain: waiting for `curate build` to write arrays into {output} "
                f"(checking every {poll_s:g} s)")
            said = True
        time.sleep(poll_s)
