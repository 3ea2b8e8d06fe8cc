"""Seed 004's and seed 001's explanations of every Colored Digits classifier, on the validation split.

Along background colour: each validation digit is repainted (its own strokes, painter.py) with a
background moving in ``explain.steps`` steps from its class's training colour to another class's,
and the classifier's probability of the digit's label is recorded at each step; E[|grad|] and its
permutation test follow (cluster/explain.py, trainers/explain/). A classifier that reads the colour
drops from sure to unsure along the way; one that reads the shape does not move. GradCAM maps of
the label on the validation digits are thresholded and scored by IoU against the digits' stroke
masks (seed 001's reproduction: higher for classifiers trained on counterfactual data).

Everything is reused on a rerun while the classifiers (their job hashes) and the settings are unchanged.
"""

import json
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel

from cluster.explain import classifier_input, explain_device, explain_gradcam, explain_sweeps, write_property_outputs
from cluster.explain_config import ExplainConfig
from cluster.progress import progress_bar
from experiments.colored_digits.config import ExperimentConfig
from experiments.colored_digits.data import make_splits
from experiments.colored_digits.painter import digit_strokes, paint
from experiments.colored_digits.palette import Palette
from experiments.harness.report import mean_and_std
from shards.files import write_durably
from trainers.explain.digit_colours import colour_steps
from trainers.explain.figures import overlay_figure_png
from trainers.explain.gradcam import default_layer
from trainers.models import load_classifier

EXPLAIN_DIR = "explain"
SUMMARY_FILE = "summary.json"
PROPERTY = "background_colour"
# The goals: the original arm's E[|grad|] along background colour at least 5x the least
# colour-sensitive arm's, and significant where the others are not.
SENSITIVITY_RATIO_GOAL = 5.0


class ClassifierExplanation(BaseModel):
    """One classifier's E[|grad|] along background colour with its p-value, and its GradCAM IoU."""

    arm: str
    seed: int
    job_hash: str
    expected_gradient_magnitude: float  # per step, of the label's probability
    p_value: float
    significant: bool
    significant_images: int
    mean_iou: float


class ArmExplanation(BaseModel):
    """An arm's explanations over its seeds, and its figures (the first seed's)."""

    arm: str
    gradient_mean: float
    gradient_std: float
    p_values: list[float]
    significant_seeds: int
    iou_mean: float
    iou_std: float
    gradcam_png: str
    sweep_png: str


class ExplanationSummary(BaseModel):
    property: str
    output: str
    images: int
    steps: int
    permutations: int
    level: float
    gradcam_layer: str
    gradcam_threshold: float
    classifiers: list[ClassifierExplanation]
    arms: list[ArmExplanation]
    verdict: str


def _validation_digits(experiment: ExperimentConfig, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """``count`` validation digits (seeded): their stroke coverage, their images as written, their labels."""
    strokes, labels = digit_strokes(experiment.data.image_size)
    _, splits = make_splits(experiment.data, labels.numpy())
    validation = splits["validation"]
    chosen = np.sort(np.random.default_rng(seed).permutation(len(validation.indices))[:count])
    indices = validation.indices[chosen]
    coverage = strokes[indices]
    return coverage, paint(coverage, torch.from_numpy(validation.backgrounds[chosen])), labels.numpy()[indices]


def _background_ends(palette: Palette, labels: np.ndarray, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per digit: its class's first training colour, and the first training colour of another class (seeded)."""
    classes = palette.class_colours.shape[0]
    other = (labels + np.random.default_rng(seed).integers(1, classes, size=len(labels))) % classes
    return torch.from_numpy(palette.class_colours[labels, 0]), torch.from_numpy(palette.class_colours[other, 0])


def _explain_classifier(experiment: ExperimentConfig, run, config: ExplainConfig, digits, ends, directory: Path, first: bool):
    """One classifier (an ArmRun); with ``first``, also its arm's figures."""
    coverage, images, labels = (part[: config.images] for part in digits)
    device = explain_device(config.device)
    model = load_classifier(run.checkpoint, experiment.train.model, experiment.train.num_classes).to(device)
    prepare = classifier_input(experiment.train.data)
    colours = colour_steps(*ends, config.steps)  # (B, N, 3)
    sweeps = (paint(coverage[index].expand(config.steps, -1, -1, -1), colours[index]) for index in range(len(labels)))
    explanation = explain_sweeps(model, prepare, sweeps, labels, config, PROPERTY, device)
    cam_coverage, cam_images, cam_labels = (part[: config.gradcam.images] for part in digits)
    layer = config.gradcam.layer or default_layer(experiment.train.model)
    masks = cam_coverage[:, 0] > config.gradcam.mask_threshold
    cam = explain_gradcam(model, prepare, cam_images, cam_labels, masks, layer, config, device)
    if first:  # the arm's figures: its first seed's
        write_property_outputs(explanation, directory, f"{PROPERTY}-{run.arm}")
        captions = [f"{label} {iou:.2f}" for label, iou in zip(cam.labels, cam.iou)]
        write_durably(directory / f"gradcam-{run.arm}.png",
                      overlay_figure_png(cam.images, cam.maps, f"GradCAM at {layer}, {run.arm} arm, seed {run.seed} (label, IoU)", captions))
    test = explanation.test
    return ClassifierExplanation(arm=run.arm, seed=run.seed, job_hash=run.job_hash, expected_gradient_magnitude=test.overall_statistic,
                                 p_value=test.overall_p_value, significant=test.overall_significant,
                                 significant_images=int(test.per_sweep_significant.sum()), mean_iou=float(cam.mean_iou))


def _arm_summary(arm: str, results: list[ClassifierExplanation], directory: Path) -> ArmExplanation:
    gradient_mean, gradient_std = mean_and_std([result.expected_gradient_magnitude for result in results])
    iou_mean, iou_std = mean_and_std([result.mean_iou for result in results])
    return ArmExplanation(arm=arm, gradient_mean=gradient_mean, gradient_std=gradient_std, p_values=[result.p_value for result in results],
                          significant_seeds=sum(result.significant for result in results), iou_mean=iou_mean, iou_std=iou_std,
                          gradcam_png=str(directory / f"gradcam-{arm}.png"), sweep_png=str(directory / f"{PROPERTY}-{arm}.png"))


def explanation_verdict(arms: list[ArmExplanation], seeds: int) -> str:
    """One sentence on the issue's goals: the original arm's colour sensitivity against the least
    sensitive arm's, its significance against the others', and GradCAM IoU against the original arm's."""
    by_arm = {arm.arm: arm for arm in arms}
    if "original" not in by_arm or len(by_arm) < 2:
        return "the original arm was not compared with another arm"
    original = by_arm["original"]
    others = [arm for arm in arms if arm.arm != "original"]
    least = min(others, key=lambda arm: arm.gradient_mean)
    ratio = original.gradient_mean / max(least.gradient_mean, 1e-12)
    ratio_met = "meets" if ratio >= SENSITIVITY_RATIO_GOAL else "misses"
    alone = original.significant_seeds == seeds and all(arm.significant_seeds == 0 for arm in others)
    significance = ("significant for every seed, the others for none" if alone else
                    f"significant for {original.significant_seeds}/{seeds} seeds, the others for "
                    + ", ".join(f"{arm.arm} {arm.significant_seeds}/{seeds}" for arm in others))
    generated = [arm for arm in others if arm.arm in ("observational", "interventional", "counterfactual")]
    higher = [arm.arm for arm in generated if arm.iou_mean > original.iou_mean]
    iou = (f"GradCAM IoU higher than the original arm's ({original.iou_mean:.3f}) for {', '.join(higher) or 'no generated arm'}"
           + ("" if len(higher) == len(generated) else " (goal: every counterfactual-trained arm)"))
    return (f"original arm's E[|grad|] along background colour is {ratio:.1f}x the least colour-sensitive arm's ({least.arm}), "
            f"{ratio_met} the {SENSITIVITY_RATIO_GOAL:g}x goal; it is {significance}; {iou}")


def explain_arms(experiment: ExperimentConfig, palette: Palette, runs: list) -> ExplanationSummary:
    """E[|grad|] along background colour and the GradCAM IoU of every classifier in ``runs`` (ArmRun)."""
    config = experiment.explain
    directory = experiment.output_dir / EXPLAIN_DIR
    inputs = {"explain": config.model_dump(mode="json"), "classifiers": [[run.arm, run.seed, run.job_hash] for run in runs],
              "data": experiment.data.model_dump(mode="json")}
    summary_path = directory / SUMMARY_FILE
    if summary_path.is_file():
        saved = json.loads(summary_path.read_text())
        if saved.get("inputs") == inputs:
            return ExplanationSummary.model_validate(saved["summary"])
    directory.mkdir(parents=True, exist_ok=True)
    digits = _validation_digits(experiment, max(config.images, config.gradcam.images), config.seed)
    swept_labels = digits[2][: config.images]
    ends = _background_ends(palette, swept_labels, config.seed)
    results = []
    with progress_bar("explain classifiers") as update:
        update(0, len(runs))
        for done, run in enumerate(runs, 1):
            first = all(result.arm != run.arm for result in results)
            results.append(_explain_classifier(experiment, run, config, digits, ends, directory, first))
            update(done, len(runs))
    arms = [_arm_summary(arm, [result for result in results if result.arm == arm], directory) for arm in experiment.arms]
    summary = ExplanationSummary(
        property=PROPERTY, output=config.output, images=len(swept_labels), steps=config.steps, permutations=config.permutations,
        level=config.level, gradcam_layer=config.gradcam.layer or default_layer(experiment.train.model),
        gradcam_threshold=config.gradcam.threshold, classifiers=results, arms=arms,
        verdict=explanation_verdict(arms, len(experiment.seeds)))
    write_durably(summary_path, json.dumps({"inputs": inputs, "summary": summary.model_dump(mode="json")}, indent=1).encode())
    return summary
