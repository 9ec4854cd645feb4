"""A rich progress bar for the round loop: round, loss, accuracy and time left."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def round_progress(
    total_rounds: int, done: int, enabled: bool = True
) -> Iterator[Callable[[dict[str, Any]], None]]:
    if not enabled:
        yield lambda record: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from accord.fl.run_dir import headline_metrics

    columns = (
        TextColumn("round"),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("rounds", total=total_rounds, completed=done, status="")

        def update(record: dict[str, Any]) -> None:
            metrics = headline_metrics(record)
            loss = record.get("train_loss")
            status = "" if loss is None else f"train loss {loss:.4f}"
            if "accuracy" in metrics:
                status += f"  test loss {metrics['loss']:.4f}  accuracy {metrics['accuracy']:.4f}"
            progress.update(task, advance=1, status=status)

        yield update
