"""An experiment's report: mean ± sample std over seeds, tables for the console and Markdown, a grid of
sample images per stream, and the report written as Markdown and JSON."""

import json
import statistics
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from pydantic import BaseModel
from rich.table import Table
from torchvision.utils import make_grid

from shards.files import write_durably

REPORT_MD, REPORT_JSON = "report.md", "report.json"


def mean_and_std(values: Sequence[float]) -> tuple[float, float]:
    """The mean and the sample standard deviation (0 for a single value) of one measure over seeds."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), spread


def plus_minus(mean: float, std: float) -> str:
    """A table cell ``mean ± std`` with two decimals."""
    return f"{mean:.2f} ± {std:.2f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """The lines of a Markdown table."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(row) + " |" for row in rows)]


def rich_table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    """The same table for the console."""
    table = Table(title=title)
    for column in header:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


def _rows_of_classes(images: torch.Tensor, labels: torch.Tensor, classes: int, rows: int) -> torch.Tensor:
    """The first ``rows`` images of every class, row by row: row r holds each class's r-th image."""
    per_class = [torch.nonzero(labels == label).flatten()[:rows] for label in range(classes)]
    return images[torch.stack([picks[row] for row in range(rows) for picks in per_class if row < len(picks)])]


def samples_grid(blocks: dict[str, tuple[torch.Tensor, torch.Tensor]], destination: Path, classes: int, rows_per_class: int) -> None:
    """A PNG: per stream a titled block of its first images of every class, classes in columns.

    Args:
        blocks: per stream, its images (N, 3, S, S) in [0, 1] and their labels (N,).
        classes: the labels 0..classes-1, one column each.
        rows_per_class: how many images of each class a block shows.
    """
    scale, title_px = 2, 14
    rendered = []
    for stream, (images, labels) in blocks.items():
        grid = make_grid(_rows_of_classes(images, labels, classes, rows_per_class), nrow=classes, padding=2, pad_value=1.0)
        pixels = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        block = Image.fromarray(pixels).resize((grid.shape[2] * scale, grid.shape[1] * scale), Image.Resampling.NEAREST)
        titled = Image.new("RGB", (block.width, block.height + title_px), "white")
        ImageDraw.Draw(titled).text((2, 1), stream, fill="black")
        titled.paste(block, (0, title_px))
        rendered.append(titled)
    canvas = Image.new("RGB", (max(block.width for block in rendered), sum(block.height for block in rendered)), "white")
    top = 0
    for block in rendered:
        canvas.paste(block, (0, top))
        top += block.height
    canvas.save(destination)


def write_report(markdown: str, report: BaseModel, output_dir: Path) -> None:
    """Write ``report.md`` and ``report.json`` (the report model) into the run directory, each atomically."""
    write_durably(output_dir / REPORT_MD, markdown.encode())
    write_durably(output_dir / REPORT_JSON, json.dumps(report.model_dump(mode="json"), indent=1).encode())
