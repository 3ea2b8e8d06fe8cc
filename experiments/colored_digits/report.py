"""The experiment's report: accuracy per arm beside the paper's Table 5, new background colours in each
stream's images, and a PNG grid of samples, written as Markdown, JSON and PNG."""

from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel
from rich.table import Table

from datagen.generators.cvae_training import load_stream_images
from experiments.colored_digits.config import ArmName, ExperimentConfig
from experiments.colored_digits.jobs import GENERATED_STREAMS, ORIGINAL_STREAM
from experiments.colored_digits.palette import Palette, background_colours, distance_to_palette
from experiments.harness.report import markdown_table, mean_and_std, plus_minus, rich_table, samples_grid

SAMPLES_PNG = "samples.png"
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


def summarise_arm(arm: str, runs: list[ArmRun]) -> ArmSummary:
    confounded = [run.confounded_percent for run in runs]
    causal = [run.causal_percent for run in runs]
    paper = PAPER_TABLE5[arm]
    (confounded_mean, confounded_std), (causal_mean, causal_std) = mean_and_std(confounded), mean_and_std(causal)
    return ArmSummary(
        arm=arm, seeds=[run.seed for run in runs], confounded_percent=confounded, causal_percent=causal,
        confounded_mean=confounded_mean, confounded_std=confounded_std, causal_mean=causal_mean, causal_std=causal_std,
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


def build_report(experiment: ExperimentConfig, palette: Palette, runs: list[ArmRun]) -> ExperimentReport:
    arms = [summarise_arm(arm, [run for run in runs if run.arm == arm]) for arm in experiment.arms]
    size = experiment.data.image_size
    images = {stream: load_stream_images(experiment.store_dir / stream, size) for stream in (ORIGINAL_STREAM, *GENERATED_STREAMS)}
    destination = experiment.output_dir / SAMPLES_PNG
    samples_grid(images, destination, classes=experiment.train.num_classes, rows_per_class=SAMPLES_PER_CLASS_IN_GRID)
    streams = [stream_colours(stream, pixels, palette) for stream, (pixels, _) in images.items()]
    return ExperimentReport(name=experiment.name, arms=arms, streams=streams, verdict=verdict(arms), samples_png=str(destination))


def _arm_rows(report: ExperimentReport) -> list[list[str]]:
    return [
        [ARM_TITLES[arm.arm], plus_minus(arm.confounded_mean, arm.confounded_std), plus_minus(arm.causal_mean, arm.causal_std),
         str(len(arm.seeds)), f"{arm.paper_confounded:.2f}", f"{arm.paper_causal:.2f}"]
        for arm in report.arms
    ]


ARM_HEADER = ["arm", "confounded test %", "causal test %", "seeds", "paper confounded %", "paper causal %"]
STREAM_HEADER = ["stream", "images", "new backgrounds", "held-out colours"]


def _stream_rows(report: ExperimentReport) -> list[list[str]]:
    return [[stream.stream, str(stream.images), f"{100 * stream.new_background_share:.1f} %", f"{100 * stream.held_out_background_share:.1f} %"]
            for stream in report.streams]


def markdown(report: ExperimentReport) -> str:
    lines = [f"# Colored Digits: {report.name}", "", "Accuracy, mean ± sample std over classifier seeds, beside the paper's Table 5 (Colored MNIST).", ""]
    lines += markdown_table(ARM_HEADER, _arm_rows(report))
    lines += ["", f"**Verdict:** {report.verdict}.", "", "Backgrounds in each stream's images that no training image has "
              f"(corner pixels further than {NEW_COLOUR_TOLERANCE} from every training colour):", ""]
    lines += markdown_table(STREAM_HEADER, _stream_rows(report))
    lines += ["", f"![samples]({Path(report.samples_png).name})", ""]
    return "\n".join(lines)


def rich_tables(report: ExperimentReport) -> list[Table]:
    return [rich_table("Colored Digits (Table 5)", ARM_HEADER, _arm_rows(report)),
            rich_table("New background colours", STREAM_HEADER, _stream_rows(report))]
