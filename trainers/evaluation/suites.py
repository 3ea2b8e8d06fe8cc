"""Eval suites: how a data directory splits into scored sets, and the ``evaluate`` entry point.

| suite | layout of ``data_dir`` | label |
|---|---|---|
| ``imagefolder`` | ``<class>/<images>`` | ImageNet index for wnid folders, else sorted folder order |
| ``shards`` | a shard stream (or a store of streams) with a manifest | the sample's ``cls`` |
| ``imagenet-v2`` | ``<0..999>/<images>`` | the folder name |
| ``objectnet`` | ``<objectnet class>/<images>`` | a hit is any mapped ImageNet index |
| ``imagenet-c`` | ``<corruption>/<1..5>/<class>/<images>`` | as ``imagefolder``; adds CE and mCE |
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import torch
from tqdm import tqdm

from shards.classes import class_indices
from shards.locations import S3Url, stream_location
from trainers.errors import TrainError
from trainers.evaluation.config import EvalConfig
from trainers.evaluation.loading import (
    ImageFiles,
    ShardFiles,
    class_folders,
    eval_batches,
    image_files,
    shard_files,
)
from trainers.evaluation.metrics import (
    IMAGENET_C_SEVERITIES,
    TopKCounter,
    accepted_classes,
    corruption_errors,
    mean_corruption_error,
)
from trainers.evaluation.results import EvalResult, Reference, SubsetResult

# GenInt paper, Tables 1 and 2 (ObjectNet top-1 on the 113 overlapping classes; ImageNet-C mCE).
PAPER_REFERENCES = {
    "objectnet": [
        Reference(model=model, metric="top-1 %", value=value)
        for model, value in [
            ("ResNet-18 ImageNet-only", 20.48), ("ResNet-18 GenInt", 22.07), ("ResNet-18 GenInt+Transfer", 22.34),
            ("ResNet-152 ImageNet-only", 30.00), ("ResNet-152 GenInt", 34.47), ("ResNet-152 GenInt+Transfer", 34.69),
        ]
    ],
    "imagenet-c": [
        Reference(model=model, metric="mCE %", value=value)
        for model, value in [
            ("ResNet-18 ImageNet-only", 87.16), ("ResNet-18 GenInt (paper's best)", 74.68),
            ("ResNet-152 ImageNet-only", 69.27), ("ResNet-152 GenInt (paper's best)", 61.70),
        ]
    ],
}


@dataclass(frozen=True)
class EvalSet:
    """One set to score: its data, and for mapped labels the ImageNet classes each label accepts."""

    name: str
    source: ImageFiles | ShardFiles
    label_accepts: tuple[tuple[int, ...], ...] | None = None
    border_px: int = 0


@dataclass(frozen=True)
class SuitePlan:
    """The sets of a suite and anything left out while finding them."""

    sets: list[EvalSet]
    skipped_folders: list[str]


def _package_json(name: str) -> dict:
    with resources.files("trainers.evaluation").joinpath(f"data/{name}").open() as handle:
        return json.load(handle)


@cache
def objectnet_mapping() -> dict[str, tuple[int, ...]]:
    """ObjectNet folder name -> the ImageNet indices it overlaps (113 folders, 125 indices)."""
    return {folder: tuple(indices) for folder, indices in _package_json("objectnet_to_imagenet_indices.json").items()}


@cache
def alexnet_corruption_errors() -> dict[str, float]:
    """ImageNet-C corruption -> AlexNet top-1 error averaged over the five severities."""
    return _package_json("imagenet_c_alexnet_ce.json")["alexnet_ce"]


def _imagefolder(root: Path, name: str = "all") -> EvalSet:
    return EvalSet(name, image_files(root, class_indices(class_folders(root))))


def _plan_imagefolder(data_dir: Path, config: EvalConfig) -> SuitePlan:
    return SuitePlan([_imagefolder(data_dir)], [])


def _plan_shards(data_dir: "Path | S3Url", config: EvalConfig) -> SuitePlan:
    return SuitePlan([EvalSet("all", shard_files(data_dir))], [])


def _plan_imagenet_v2(data_dir: Path, config: EvalConfig) -> SuitePlan:
    folders = class_folders(data_dir)
    bad = [folder for folder in folders if not (folder.isdigit() and int(folder) < 1000)]
    if bad:
        raise TrainError(f"{data_dir / bad[0]}: ImageNet-V2 folders must be class indices 0..999 (got {bad[0]!r})")
    return SuitePlan([EvalSet("all", image_files(data_dir, {folder: int(folder) for folder in folders}))], [])


def _plan_objectnet(data_dir: Path, config: EvalConfig) -> SuitePlan:
    mapping = objectnet_mapping()
    folders = class_folders(data_dir)
    unmapped = [folder for folder in folders if folder not in mapping]
    if unmapped and config.objectnet_unmapped == "error":
        raise TrainError(
            f"{data_dir / unmapped[0]}: not one of the 113 ObjectNet classes that overlap ImageNet "
            f"({len(unmapped)} such folders; remove them, or leave them out with genint eval --objectnet-unmapped skip)"
        )
    kept = [folder for folder in folders if folder in mapping]
    if not kept:
        raise TrainError(f"{data_dir}: none of its folders is an ObjectNet class that overlaps ImageNet")
    # Labels are positions in ``kept``; each position accepts its folder's mapped ImageNet indices.
    source = image_files(data_dir, {folder: position for position, folder in enumerate(kept)})
    accepts = tuple(mapping[folder] for folder in kept)
    return SuitePlan([EvalSet("all", source, accepts, config.objectnet_border_px)], unmapped)


def _plan_imagenet_c(data_dir: Path, config: EvalConfig) -> SuitePlan:
    sets = []
    for corruption in class_folders(data_dir, "one folder per corruption"):
        severities = class_folders(data_dir / corruption, "severity folders 1..5")
        bad = [name for name in severities if name not in {str(s) for s in IMAGENET_C_SEVERITIES}]
        if bad:
            raise TrainError(f"{data_dir / corruption / bad[0]}: ImageNet-C severity folders must be named 1..5")
        sets += [_imagefolder(data_dir / corruption / severity, f"{corruption}/{severity}") for severity in severities]
    return SuitePlan(sets, [])


SUITES: dict[str, Callable[[Path, EvalConfig], SuitePlan]] = {
    "imagefolder": _plan_imagefolder,
    "shards": _plan_shards,
    "imagenet-v2": _plan_imagenet_v2,
    "objectnet": _plan_objectnet,
    "imagenet-c": _plan_imagenet_c,
}


def _accepts_mask(eval_set: EvalSet, num_classes: int, device: torch.device) -> torch.Tensor | None:
    if eval_set.label_accepts is None:
        return None
    highest = max(index for indices in eval_set.label_accepts for index in indices)
    if highest >= num_classes:
        raise TrainError(
            f"{eval_set.source.root}: labels map to ImageNet index {highest} but the model has {num_classes} outputs"
        )
    mask = torch.zeros(len(eval_set.label_accepts), num_classes, dtype=torch.bool, device=device)
    for label, indices in enumerate(eval_set.label_accepts):
        mask[label, list(indices)] = True
    return mask


@torch.inference_mode()
def score_set(model: torch.nn.Module, eval_set: EvalSet, config: EvalConfig, device: torch.device) -> TopKCounter:
    """Top-1/top-5 hits of ``model`` (already on ``device``, in eval mode) on one set.

    Raises:
        TrainError: if a label falls outside the model's outputs or the data cannot be read.
    """
    counter = TopKCounter()
    mask: torch.Tensor | None = None
    batches = eval_batches(eval_set.source, config, device, eval_set.border_px)
    batch_count = -(-eval_set.source.samples // config.batch_size)
    for images, labels in tqdm(batches, total=batch_count, desc=eval_set.name, unit="batch", disable=None, leave=False):
        logits = model(images)
        num_classes = logits.shape[1]
        if mask is None:
            mask = _accepts_mask(eval_set, num_classes, device)
        if mask is None and int(labels.max()) >= num_classes:
            raise TrainError(f"{eval_set.source.root}: label {int(labels.max())} but the model has {num_classes} outputs")
        counter.update(logits, accepted_classes(labels, num_classes, mask))
    return counter


def _subset_result(name: str, counter: TopKCounter) -> SubsetResult:
    return SubsetResult(name=name, samples=counter.samples, top1=counter.accuracy(1), top5=counter.accuracy(5))


def _corruption_summary(subsets: list[SubsetResult]) -> tuple[dict[str, float], float | None]:
    errors: dict[str, dict[int, float]] = {}
    for subset in subsets:
        corruption, severity = subset.name.split("/")
        errors.setdefault(corruption, {})[int(severity)] = 1.0 - subset.top1
    per_corruption = corruption_errors(errors, alexnet_corruption_errors())
    return per_corruption, (mean_corruption_error(per_corruption) if per_corruption else None)


def evaluate(
    model: torch.nn.Module,
    suite: str,
    data_dir: "Path | S3Url | str",
    config: EvalConfig | None = None,
    device: torch.device | str = "cpu",
) -> EvalResult:
    """Score ``model`` on a suite (see the module table for the layouts).

    Args:
        model: a classifier returning (N, num_classes) logits; it is moved to ``device`` and put in eval mode.
        suite: one of ``SUITES``.
        data_dir: the suite's data directory (the ``shards`` suite also takes an ``s3://`` store or stream).
        config: transform and batching (defaults: resize 256, crop 224).
        device: where the model runs; CUDA also decodes on the GPU.
    Returns:
        Per-subset and total accuracies, CE/mCE for ``imagenet-c``, and the paper's reference numbers.
    Raises:
        TrainError: unknown suite, or bad / empty / unreadable data.
    """
    if suite not in SUITES:
        raise TrainError(f"unknown eval suite {suite!r} (choose one of: {', '.join(SUITES)})")
    config = config or EvalConfig()
    device = torch.device(device)
    data_dir = stream_location(data_dir)
    if isinstance(data_dir, S3Url) and suite != "shards":
        raise TrainError(f"{data_dir}: the {suite} suite reads a local directory; only the shards suite reads s3://")
    plan = SUITES[suite](data_dir, config)
    model = model.to(device).eval()
    counters = [score_set(model, eval_set, config, device) for eval_set in plan.sets]
    subsets = [_subset_result(eval_set.name, counter) for eval_set, counter in zip(plan.sets, counters)]
    total = TopKCounter()
    for counter in counters:
        total.merge(counter)
    corruption_ce, mce = _corruption_summary(subsets) if suite == "imagenet-c" else ({}, None)
    return EvalResult(
        suite=suite,
        data_dir=str(data_dir),
        samples=total.samples,
        top1=total.accuracy(1),
        top5=total.accuracy(5),
        subsets=subsets,
        corruption_errors_percent=corruption_ce,
        mce_percent=mce,
        skipped_folders=plan.skipped_folders,
        references=PAPER_REFERENCES.get(suite, []),
    )
