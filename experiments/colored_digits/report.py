"""The experiment's report: accuracy per arm beside the paper's Table 5, new background colours in each
stream's images, and a PNG grid of samples, written as Markdown, JSON and PNG."""

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from pydantic import BaseModel
from rich.table import Table
from torchvision.utils import make_grid

from cluster.colored_digits.config import ArmName, ExperimentConfig
from cluster.colored_digits.jobs import GENERATED_STREAMS, ORIGINAL_STREAM
from cluster.colored_digits.palette import Palette, background_colours, distance_to_palette
from datagen.generators.cvae_training import load_stream_images

REPORT_MD, REPORT_JSON, SAMPLES_PNG = "report.md", "report.json", "samples.png"
# Paper, Table 5 (Colored MNIST): confounded-test / causal-test accuracy, percent.
PAPER_TABLE5 = {
    "original": (99.45, 8.26),
    "irm": (87.32, 18.49),
    "observational": (59.95, 11.26),
    "interventional": (58.48, 29.62),
}
ARM_TITLES = {
    "original": "original data",
    "irm": "IRM (colour environments)",
    "observational": "observational CVAE",
    "interventional": "interventional CVAE",
}
# A background further than this (largest channel difference) from every training colour is new;
# the palette's levels are 0.5 apart, PNG rounding moves a colour by under 0.01.
NEW_COLOUR_TOLERANCE = 0.15
SAMPLES_PER_CLASS_IN_GRID = 2


@dataclass(frozen=True)
class ArmRun:
    """One classifier: its arm, seed, test accuracies (percent) and where it was saved."""

    arm: ArmName
    seed: int
    confounded_percent: float
    causal_percent: float
    steps: int
    final_loss: float  # rank 0's last training loss
    checkpoint: str
    job_hash: str


class ArmSummary(BaseModel):
    arm: str
    seeds: list[int]
    confounded_percent: list[float]
    causal_percent: list[float]
    confounded_mean: float
    confounded_std: float
    causal_mean: float
    causal_std: float
    paper_confounded: float
    paper_causal: float


class StreamColours(BaseModel):
    """How many of a stream's images have a background no training image has."""

    stream: str
    images: int
    new_background_share: float
    held_out_background_share: float  # within tolerance of a colour held out of training


class ExperimentReport(BaseModel):
    name: str
    arms: list[ArmSummary]
    streams: list[StreamColours]
    verdict: str
    samples_png: str


def _spread(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarise_arm(arm: str, runs: list[ArmRun]) -> ArmSummary:
    confounded = [run.confounded_percent for run in runs]
    causal = [run.causal_percent for run in runs]
    paper = PAPER_TABLE5[arm]
    return ArmSummary(
        arm=arm, seeds=[run.seed for run in runs], confounded_percent=confounded, causal_percent=causal,
        confounded_mean=statistics.fmean(confounded), confounded_std=_spread(confounded),
        causal_mean=statistics.fmean(causal), causal_std=_spread(causal),
        paper_confounded=paper[0], paper_causal=paper[1],
    )


def stream_colours(stream: str, images: torch.Tensor, palette: Palette) -> StreamColours:
    backgrounds = background_colours(images.numpy())
    new = distance_to_palette(backgrounds, palette.training_colours) > NEW_COLOUR_TOLERANCE
    held_out = distance_to_palette(backgrounds, palette.held_out) <= NEW_COLOUR_TOLERANCE
    return StreamColours(stream=stream, images=len(images), new_background_share=float(new.mean()),
                         held_out_background_share=float(held_out.mean()))


def verdict(arms: list[ArmSummary]) -> str:
    """One sentence: does the interventional arm beat every other arm on the causal test?"""
    by_arm = {summary.arm: summary for summary in arms}
    if "interventional" not in by_arm or len(by_arm) < 2:
        return "the interventional arm was not compared with another arm"
    best_other = max((summary for summary in arms if summary.arm != "interventional"), key=lambda summary: summary.causal_mean)
    ours = by_arm["interventional"].causal_mean
    relation = "beats" if ours > best_other.causal_mean else "does NOT beat"
    return (f"interventional CVAE {relation} every other arm on the causal test: {ours:.2f} % against "
            f"{best_other.causal_mean:.2f} % for {ARM_TITLES[best_other.arm]} (means over seeds)")


def _rows_of_classes(images: torch.Tensor, labels: torch.Tensor, rows: int) -> torch.Tensor:
    """The first ``rows`` images of every class, row by row: row r holds each class's r-th image."""
    per_class = [torch.nonzero(labels == label).flatten()[:rows] for label in range(10)]
    return images[torch.stack([picks[row] for row in range(rows) for picks in per_class if row < len(picks)])]


def samples_grid(blocks: dict[str, tuple[torch.Tensor, torch.Tensor]], destination: Path) -> None:
    """A PNG: per stream a titled block of the first images of every class, classes in columns."""
    scale, title_px = 2, 14
    rendered = []
    for stream, (images, labels) in blocks.items():
        grid = make_grid(_rows_of_classes(images, labels, SAMPLES_PER_CLASS_IN_GRID), nrow=10, padding=2, pad_value=1.0)
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


def build_report(experiment: ExperimentConfig, palette: Palette, runs: list[ArmRun]) -> ExperimentReport:
    arms = [summarise_arm(arm, [run for run in runs if run.arm == arm]) for arm in experiment.arms]
    size = experiment.data.image_size
    images = {stream: load_stream_images(experiment.store_dir / stream, size) for stream in (ORIGINAL_STREAM, *GENERATED_STREAMS)}
    destination = experiment.output_dir / SAMPLES_PNG
    samples_grid(images, destination)
    streams = [stream_colours(stream, pixels, palette) for stream, (pixels, _) in images.items()]
    return ExperimentReport(name=experiment.name, arms=arms, streams=streams, verdict=verdict(arms), samples_png=str(destination))


def _arm_rows(report: ExperimentReport) -> list[list[str]]:
    return [
        [ARM_TITLES[arm.arm], f"{arm.confounded_mean:.2f} ± {arm.confounded_std:.2f}", f"{arm.causal_mean:.2f} ± {arm.causal_std:.2f}",
         str(len(arm.seeds)), f"{arm.paper_confounded:.2f}", f"{arm.paper_causal:.2f}"]
        for arm in report.arms
    ]


ARM_HEADER = ["arm", "confounded test %", "causal test %", "seeds", "paper confounded %", "paper causal %"]
STREAM_HEADER = ["stream", "images", "new backgrounds", "held-out colours"]


def _stream_rows(report: ExperimentReport) -> list[list[str]]:
    return [[stream.stream, str(stream.images), f"{100 * stream.new_background_share:.1f} %", f"{100 * stream.held_out_background_share:.1f} %"]
            for stream in report.streams]


def markdown(report: ExperimentReport) -> str:
    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(row) + " |" for row in rows)]

    lines = [f"# Colored Digits: {report.name}", "", "Accuracy, mean ± sample std over classifier seeds, beside the paper's Table 5 (Colored MNIST).", ""]
    lines += table(ARM_HEADER, _arm_rows(report))
    lines += ["", f"**Verdict:** {report.verdict}.", "", "Backgrounds in each stream's images that no training image has "
              f"(corner pixels further than {NEW_COLOUR_TOLERANCE} from every training colour):", ""]
    lines += table(STREAM_HEADER, _stream_rows(report))
    lines += ["", f"![samples]({Path(report.samples_png).name})", ""]
    return "\n".join(lines)


def rich_tables(report: ExperimentReport) -> list[Table]:
    tables = []
    for title, header, rows in (("Colored Digits (Table 5)", ARM_HEADER, _arm_rows(report)),
                                ("New background colours", STREAM_HEADER, _stream_rows(report))):
        table = Table(title=title)
        for column in header:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        tables.append(table)
    return tables


def write_report(report: ExperimentReport, output_dir: Path) -> None:
    (output_dir / REPORT_MD).write_text(markdown(report))
    (output_dir / REPORT_JSON).write_text(json.dumps(report.model_dump(mode="json"), indent=1))
