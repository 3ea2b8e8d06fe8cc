"""Showing and saving an evaluation: a rich table on screen and the full result as JSON."""

import json
from pathlib import Path

from rich.table import Table

from shards.files import write_durably
from trainers.evaluation.results import EvalResult


def _percent(fraction: float) -> str:
    return f"{100.0 * fraction:.2f}"


def _subset_table(result: EvalResult) -> Table:
    table = Table(title=f"{result.suite}: {result.data_dir}")
    table.add_column("set")
    table.add_column("images", justify="right")
    table.add_column("top-1 %", justify="right")
    table.add_column("top-5 %", justify="right")
    for subset in result.subsets:
        table.add_row(subset.name, str(subset.samples), _percent(subset.top1), _percent(subset.top5))
    if len(result.subsets) > 1:
        table.add_section()
        table.add_row("total", str(result.samples), _percent(result.top1), _percent(result.top5), style="bold")
    if result.references:
        table.add_section()
    for reference in result.references:
        table.add_row(f"paper: {reference.model}", "", f"{reference.value:.2f}", "", style="dim")
    return table


def _corruption_table(result: EvalResult) -> Table:
    """One row per corruption: top-1 error per severity and its CE, then the mCE."""
    errors: dict[str, dict[str, float]] = {}
    for subset in result.subsets:
        corruption, severity = subset.name.split("/")
        errors.setdefault(corruption, {})[severity] = 1.0 - subset.top1
    severities = sorted({severity for by_severity in errors.values() for severity in by_severity})
    table = Table(title=f"{result.suite}: {result.data_dir} (top-1 error %)")
    table.add_column("corruption")
    for severity in severities:
        table.add_column(f"s{severity}", justify="right")
    table.add_column("CE %", justify="right")
    for corruption, by_severity in errors.items():
        ce = result.corruption_errors_percent.get(corruption)
        cells = [_percent(by_severity[s]) if s in by_severity else "-" for s in severities]
        table.add_row(corruption, *cells, "-" if ce is None else f"{ce:.2f}")
    table.add_section()
    mce = "-" if result.mce_percent is None else f"{result.mce_percent:.2f}"
    table.add_row("mCE", *[""] * len(severities), mce, style="bold")
    for reference in result.references:
        table.add_row(f"paper: {reference.model}", *[""] * len(severities), f"{reference.value:.2f}", style="dim")
    return table


def format_table(result: EvalResult) -> Table:
    """A rich table of the result, ending with the paper's reference numbers where they apply.

    Args:
        result: what ``evaluate`` returned.
    Returns:
        Per-corruption errors, CE and mCE for ``imagenet-c`` (references in the CE column);
        per-set top-1/top-5 otherwise (references in the top-1 column).
    """
    table = _corruption_table(result) if result.suite == "imagenet-c" else _subset_table(result)
    if result.skipped_folders:
        table.caption = f"left out {len(result.skipped_folders)} folders outside the mapped classes"
    return table


def write_json(result: EvalResult, path: Path) -> None:
    """Write the result as indented JSON, atomically and durably (``shards.files.write_durably``).

    Args:
        result: what ``evaluate`` returned.
        path: the file to write; its parent directories are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_durably(path, (json.dumps(result.model_dump(mode="json"), indent=2) + "\n").encode())
