"""Progress display and tables for the CLI (rich)."""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

if TYPE_CHECKING:  # a type only: shards.inspect reads through webdataset, which imports torch
    from shards.inspect import StreamSummary

console = Console()


@contextmanager
def progress_board() -> Iterator[Callable[[str], Callable[[int, int], None]]]:
    """One live display on stderr for several bars (stages running at once); yields
    ``add(description) -> update(completed, total)``. A bar appears at its first update, so an
    early error prints alone."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    progress = Progress(*columns, console=Console(stderr=True))
    lock = threading.Lock()  # stages update from their own threads

    def add(description: str) -> Callable[[int, int], None]:
        task = None

        def update(completed: int, total: int) -> None:
            nonlocal task
            with lock:
                if task is None:
                    progress.start()
                    task = progress.add_task(description, total=total)
                progress.update(task, completed=completed, total=total)

        return update

    try:
        yield add
    except BaseException:
        progress.live.transient = True  # the bar goes: the error that follows is the one line left
        raise
    finally:
        progress.stop()


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A single bar (see ``progress_board``); yields ``update(completed, total)``."""
    with progress_board() as add:
        yield add(description)


def summary_tables(summaries: "list[StreamSummary]", max_classes: int = 20) -> list[Table]:
    """One table of totals for all streams, then one table per stream's provenance fields."""
    totals = Table(title="streams")
    for column in ("stream", "shards", "samples", "MiB", "classes", "per-class samples"):
        totals.add_column(column)
    for summary in summaries:
        counts = sorted(summary.class_counts.items())
        histogram = " ".join(f"{label}:{count}" for label, count in counts[:max_classes])
        if len(counts) > max_classes:
            histogram += f" ... (+{len(counts) - max_classes} classes)"
        totals.add_row(summary.name, str(summary.shards), str(summary.samples),
                       f"{summary.bytes / 2**20:.1f}", str(len(counts)), histogram)
    tables = [totals]
    for summary in summaries:
        fields = Table(title=f"provenance of {summary.name}")
        for column in ("field", "samples", "distinct", "most common"):
            fields.add_column(column)
        for name, field in summary.provenance.items():
            common = ", ".join(f"{value} ({count})" for value, count in field.most_common())
            fields.add_row(name, str(field.samples), field.distinct, common)
        tables.append(fields)
    return tables
