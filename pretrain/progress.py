"""A progress bar for the training loop (rich), silent when disabled."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


@contextlib.contextmanager
def progress_bar(start: int, total: int, enabled: bool = True) -> Iterator[Callable[[float], None]]:
    """Yield ``advance(loss)``, which moves the bar one step and shows the loss."""
    if not enabled:
        yield lambda loss: None
        return
    columns = (TextColumn("pretrain"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("pretrain", total=total, completed=start, loss=float("nan"))

        def advance(loss: float) -> None:
            bar.update(task, advance=1, loss=loss)

        yield advance
