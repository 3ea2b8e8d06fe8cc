"""``genint explain``: how much a trained classifier's answer depends on one property of its input
(seed 004, the expected property gradient magnitude with its permutation test), and GradCAM.

A property is swept over N evenly spaced settings for a seeded set of base images: ``direction:<k>``
moves a generated image's latent coordinate along the job's k-th GANSpace/CVAE direction;
``background_colour`` and ``stroke_colour`` repaint a digit image's background or strokes between two
colours. The model's output at each step gives E[|grad_X|] per image and overall, and the shuffle
test says whether the dependence is systematic (trainers/explain holds the model-agnostic pieces).
"""

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.table import Table
from torch import nn

from cluster.config import JobConfig
from cluster.errors import ClusterError, ConfigError
from cluster.explain_config import ExplainConfig
from cluster.strategy_search import _prepared as prepare_for_classifier
from datagen.directions import Directions, load_directions
from datagen.generators.loading import load_generator, pick_device
from datagen.strategies import intervene
from shards.errors import ShardError
from shards.files import write_durably
from shards.images import read_stream_images
from shards.reader import stream_dirs
from trainers.data.config import LoaderConfig
from trainers.explain.digit_colours import background_colour, colour_sweep, stroke_coverage, stroke_masks
from trainers.explain.figures import overlay_figure_png, sweep_figure_png
from trainers.explain.gradcam import default_layer, find_layer, gradcam, mask_iou
from trainers.explain.gradient import PermutationTest, permutation_test
from trainers.explain.outputs import sweep_outputs
from trainers.models import load_classifier

EXPLAIN_DIR = "explain"
COLOUR_PARTS = {"background_colour": "background", "stroke_colour": "stroke"}
PROPERTIES_HELP = "direction:<k> (k a direction of the job's directions file), background_colour or stroke_colour"
_DIRECTION = re.compile(r"direction:(\d{1,6})")
GRADCAM_FILE = "gradcam"
ProgressUpdate = Callable[[int, int], None]


@dataclass(frozen=True)
class PropertyName:
    """A parsed ``--property``: its kind and, for a direction, the direction's index."""

    text: str
    kind: str  # direction, background_colour or stroke_colour
    component: int | None = None

    @property
    def slug(self) -> str:
        """The name as a file name: direction:3 -> direction-3."""
        return self.text.replace(":", "-")


def parse_property(text: str) -> PropertyName:
    """``--property`` as a PropertyName.

    Raises:
        ConfigError: not a property genint can sweep.
    """
    match = _DIRECTION.fullmatch(text)
    if match:
        return PropertyName(text, "direction", int(match.group(1)))
    if text in COLOUR_PARTS:
        return PropertyName(text, text)
    raise ConfigError(f"--property {text[:100]!r}: unknown property; choose {PROPERTIES_HELP} "
                      "(the synthetic noise, sine, parabola and step relationships: genint explain --sanity)")


@dataclass(frozen=True)
class PropertyExplanation:
    """One property's sweeps: the outputs, E[|grad_X|] per image and overall, and the test."""

    property: str
    output: str
    labels: np.ndarray  # (B,) the class whose output each sweep records
    outputs: np.ndarray  # (B, N)
    test: PermutationTest

    def to_dict(self) -> dict:
        test = self.test
        images = [{"label": int(label), "statistic": float(statistic), "p_value": float(p), "significant": bool(p < test.level),
                   "null_mean": float(null_mean), "outputs": [round(float(value), 6) for value in row]}
                  for label, statistic, p, null_mean, row in zip(self.labels, test.per_sweep_statistic, test.per_sweep_p_value,
                                                                   test.per_sweep_null_mean, self.outputs)]
        return {"property": self.property, "output": self.output, "steps": int(self.outputs.shape[1]),
                "permutations": test.permutations, "level": test.level,
                "expected_gradient_magnitude": test.overall_statistic, "p_value": test.overall_p_value,
                "significant": test.overall_significant, "null_mean": float(test.overall_null.mean()),
                "significant_images": int(test.per_sweep_significant.sum()), "images": images}


@dataclass(frozen=True)
class GradcamExplanation:
    """GradCAM maps of a seeded set of images and, where digit masks are known, their IoU with them."""

    layer: str
    images: torch.Tensor  # (B, 3, S, S) in [0, 1]
    labels: np.ndarray  # (B,)
    maps: torch.Tensor  # (B, S, S) in [0, 1]
    iou: np.ndarray | None  # (B,)
    threshold: float

    @property
    def mean_iou(self) -> float | None:
        return None if self.iou is None else float(self.iou.mean())

    def to_dict(self) -> dict:
        return {"layer": self.layer, "images": len(self.labels), "threshold": self.threshold, "mean_iou": self.mean_iou,
                "iou": None if self.iou is None else [float(value) for value in self.iou],
                "labels": [int(label) for label in self.labels]}


def explain_device(name: str) -> torch.device:
    """``explain.device`` as a torch device; CUDA only where this process sees it."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("explain.device: cuda, but no CUDA device is visible here (use auto or cpu)")
    return pick_device(name)


def classifier_input(loader: LoaderConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """[0, 1] images -> what the job's classifier was trained to see (its eval resize, crop, normalisation)."""
    return lambda images: prepare_for_classifier(images, loader)


def explain_sweeps(model: nn.Module, prepare: Callable[[torch.Tensor], torch.Tensor], sweeps: Iterator[torch.Tensor],
                   labels: np.ndarray, config: ExplainConfig, property_text: str, device: torch.device,
                   on_progress: ProgressUpdate = lambda done, total: None) -> PropertyExplanation:
    """Record ``config.output`` along every sweep and test it.

    Args:
        sweeps: per base image in order, its (N, 3, S, S) steps in [0, 1] (made lazily: a sweep of
            large images is large).
        labels: (B,) the class each sweep's output is read for.
    """
    rows = []
    on_progress(0, len(labels))
    for index, sweep in enumerate(sweeps):
        rows.append(sweep_outputs(model, prepare, sweep[None], torch.tensor(labels[index : index + 1]), config.output,
                                  config.batch_size, device)[0])
        on_progress(index + 1, len(labels))
    outputs = np.stack(rows)
    test = permutation_test(outputs, config.permutations, config.seed, config.level, accuracy=config.accuracy)
    return PropertyExplanation(property_text, config.output, labels, outputs, test)


def explain_gradcam(model: nn.Module, prepare: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, labels: np.ndarray,
                    masks: torch.Tensor | None, layer: str, config: ExplainConfig, device: torch.device) -> GradcamExplanation:
    """GradCAM maps of each image's label at ``layer``, at the images' size, and their IoU with ``masks``.

    Raises:
        TrainError: the model has no module ``layer``, or its output is not a conv activation.
    """
    module = find_layer(model, layer)
    maps = []
    for start in range(0, len(images), config.batch_size):
        batch = prepare(images[start : start + config.batch_size].to(device))
        chosen = torch.tensor(labels[start : start + config.batch_size])
        maps.append(gradcam(model, batch, chosen, module))
    found = torch.cat(maps)
    if found.shape[-2:] != images.shape[-2:]:  # the classifier's crop differs from the image: compare at the image's size
        found = torch.nn.functional.interpolate(found[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    threshold = config.gradcam.threshold
    iou = None if masks is None else mask_iou(found, masks, threshold).numpy()
    return GradcamExplanation(layer, images, labels, found, iou, threshold)


def _seeded_choice(count: int, wanted: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).permutation(count)[: min(wanted, count)])


def stream_images(job: JobConfig, config: ExplainConfig, count: int) -> tuple[torch.Tensor, np.ndarray]:
    """``count`` images of ``explain.stream`` (seeded) as float [0, 1] at the classifier's eval size, and their labels.

    Raises:
        ConfigError: the stream is not in the job's store. ShardError: a damaged shard.
    """
    stream_dir = job.store_dir / config.stream
    try:
        available = [path.name for path in stream_dirs(job.store_dir) if path != Path(job.store_dir)]
    except ShardError as error:  # not a directory / no manifest: the job's store holds no streams
        raise ConfigError(f"explain.stream {config.stream!r}: the store {job.store_dir} holds no streams ({error})") from None
    if config.stream not in available:
        raise ConfigError(f"explain.stream {config.stream!r}: not in the store {job.store_dir} (streams there: {', '.join(available)})")
    images, labels = read_stream_images(stream_dir, job.train.data.resize_size)
    if len(labels) == 0:
        raise ClusterError(f"explain.stream {config.stream!r}: no committed images in {stream_dir}")
    chosen = _seeded_choice(len(labels), count, config.seed)
    return torch.from_numpy(images[chosen]).float() / 255, labels[chosen].astype(np.int64)


def _digit_layout(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's background colour and stroke coverage (white strokes, as the digits benchmarks paint them)."""
    background = background_colour(images)
    try:
        return background, stroke_coverage(images, background)
    except ValueError as error:
        raise ClusterError(f"explain: {error} (colour properties need light strokes on a darker uniform background)") from None


def colour_sweeps(images: torch.Tensor, part: str, config: ExplainConfig) -> Iterator[torch.Tensor]:
    """Per image, its ``part`` ("background" or "stroke") swept from ``explain.colours.start`` to ``.end``."""
    background, coverage = _digit_layout(images)
    white = torch.ones_like(background)
    own = background if part == "background" else white
    end = torch.tensor(config.colours.end, dtype=images.dtype).expand_as(own)
    start = own if config.colours.start == "own" else torch.tensor(config.colours.start, dtype=images.dtype).expand_as(own)
    for index in range(len(images)):
        one = slice(index, index + 1)
        yield colour_sweep(coverage[one], background[one], white[one], part, start[one], end[one], config.steps)[0]


def direction_latents(latents: torch.Tensor, directions: Directions, component: int, offsets: torch.Tensor) -> torch.Tensor:
    """Each latent with its coordinate along direction ``component`` set to each offset: (B, d), (N,) -> (B, N, d)."""
    count, steps = len(latents), len(offsets)
    direction = torch.from_numpy(directions.lat_comp[component]).float()
    repeated = latents.repeat_interleave(steps, dim=0)
    edited = intervene(repeated, direction.expand(count * steps, -1), offsets.repeat(count), torch.from_numpy(directions.lat_mean).float())
    return edited.view(count, steps, -1)


def _job_directions(job: JobConfig, component: int, latent_dim: int) -> Directions:
    path = job.datagen.directions_path(job.local_output_dir)
    directions = load_directions(path, latent_dim=latent_dim)
    available = directions.lat_comp.shape[0]
    if component >= available:
        raise ConfigError(f"--property direction:{component}: the directions file {path} has {available} directions (0 to {available - 1})")
    return directions


def check_property_available(job: JobConfig, name: PropertyName) -> None:
    """Fail before anything loads when the job cannot produce the property (a direction without a directions file)."""
    if name.kind == "direction":
        path = job.datagen.directions_path(job.local_output_dir)
        if not path.is_file():
            raise ClusterError(f"--property {name.text}: the job has no directions file ({path} not found; datagen.directions.path); "
                               "compute it with `genint directions CONFIG`")


def direction_sweeps(job: JobConfig, config: ExplainConfig, component: int, device: torch.device) -> tuple[Iterator[torch.Tensor], np.ndarray]:
    """Per seeded (class, latent) of the job's generator, its images along direction ``component``, and the classes."""
    datagen = job.datagen
    generator = load_generator(datagen.generator.kind, datagen.weights_path(job.local_output_dir), device, datagen.generator.precision)
    directions = _job_directions(job, component, generator.latent_dim)
    rng = np.random.default_rng(config.seed)
    classes = np.asarray(datagen.classes if datagen.classes is not None else range(generator.num_classes))
    labels = rng.choice(classes, size=config.images).astype(np.int64)
    seeds = [int(seed) for seed in rng.integers(2**31, size=config.images)]
    reach = config.direction_stdevs * float(directions.lat_stdev[component])
    offsets = torch.linspace(-reach, reach, config.steps)
    latents = direction_latents(generator.sample_latents(seeds, config.truncation), directions, component, offsets)

    def sweeps() -> Iterator[torch.Tensor]:
        with torch.inference_mode():
            for index in range(config.images):
                classes_of_steps = torch.full((config.steps,), int(labels[index]))
                yield generator.generate(latents[index], classes_of_steps, config.truncation).clamp(0, 1)

    return sweeps(), labels


def explain_job_property(job: JobConfig, checkpoint: str, name: PropertyName, config: ExplainConfig,
                         on_progress: ProgressUpdate = lambda done, total: None) -> PropertyExplanation:
    """Sweep ``name`` for the job's classifier at ``checkpoint`` (see the module docstring).

    Raises:
        ConfigError, ClusterError, TrainError, DatagenError, ShardError: one line on any bad input.
    """
    check_property_available(job, name)
    device = explain_device(config.device)
    model = load_classifier(checkpoint, job.train.model, job.train.num_classes).to(device)
    if name.kind == "direction":
        sweeps, labels = direction_sweeps(job, config, name.component, device)
    else:
        images, labels = stream_images(job, config, config.images)
        sweeps = colour_sweeps(images, COLOUR_PARTS[name.kind], config)
    return explain_sweeps(model, classifier_input(job.train.data), sweeps, labels, config, name.text, device, on_progress)


def explain_job_gradcam(job: JobConfig, checkpoint: str, config: ExplainConfig) -> GradcamExplanation:
    """GradCAM of the job's classifier on ``explain.gradcam.images`` images of ``explain.stream``."""
    device = explain_device(config.device)
    model = load_classifier(checkpoint, job.train.model, job.train.num_classes).to(device)
    layer = config.gradcam.layer or default_layer(job.train.model)
    find_layer(model, layer)  # a wrong layer name fails before the stream is read
    images, labels = stream_images(job, config, config.gradcam.images)
    masks = None
    if config.gradcam.stroke_iou:
        masks = stroke_masks(_digit_layout(images)[1], config.gradcam.mask_threshold)
    return explain_gradcam(model, classifier_input(job.train.data), images, labels, masks, layer, config, device)


def explain_output_dir(job: JobConfig, config: ExplainConfig) -> Path:
    return config.output_dir or job.local_output_dir / EXPLAIN_DIR


def _write_json(path: Path, record: dict) -> None:
    write_durably(path, (json.dumps(record, indent=1) + "\n").encode())


def property_rows(explanation: PropertyExplanation) -> tuple[list[str], list[list[str]]]:
    """The per-image table (and an 'all' row) as a header and rows of text."""
    test = explanation.test
    header = ["image", "label", "E[|grad|] per step", "shuffled mean", "p-value", "significant"]
    rows = [[str(index), str(label), f"{statistic:.4g}", f"{null_mean:.4g}", f"{p:.4g}", "yes" if p < test.level else ""]
            for index, (label, statistic, null_mean, p) in enumerate(zip(explanation.labels, test.per_sweep_statistic,
                                                                          test.per_sweep_null_mean, test.per_sweep_p_value))]
    rows.append(["all", "-", f"{test.overall_statistic:.4g}", f"{test.overall_null.mean():.4g}", f"{test.overall_p_value:.4g}",
                 "yes" if test.overall_significant else ""])
    return header, rows


def property_table(explanation: PropertyExplanation) -> Table:
    header, rows = property_rows(explanation)
    test = explanation.test
    table = Table(title=f"E[|grad|] of the {explanation.output} along {explanation.property} "
                        f"({explanation.outputs.shape[1]} steps, K={test.permutations}, two-sided, level {test.level})")
    for column in header:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def write_property_outputs(explanation: PropertyExplanation, directory: Path, slug: str) -> list[Path]:
    """``SLUG.json`` (every number), ``SLUG.md`` (the table) and ``SLUG.png`` (outputs and the null), each atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    header, rows = property_rows(explanation)
    escaped = [column.replace("|", "\\|") for column in header]  # a "|" inside a cell would end it
    table = ["| " + " | ".join(escaped) + " |", "|" + "---|" * len(header), *("| " + " | ".join(row) + " |" for row in rows)]
    test = explanation.test
    paths = [directory / f"{slug}.json", directory / f"{slug}.md", directory / f"{slug}.png"]
    _write_json(paths[0], explanation.to_dict())
    write_durably(paths[1], (f"# E[|grad|] of the {explanation.output} along {explanation.property}\n\n" + "\n".join(table) + "\n").encode())
    write_durably(paths[2], sweep_figure_png(explanation.outputs, test.overall_null, test.overall_statistic, test.overall_p_value,
                                             explanation.property, explanation.output))
    return paths


def write_gradcam_outputs(explanation: GradcamExplanation, directory: Path, title: str) -> list[Path]:
    """``gradcam.json`` and ``gradcam.png`` (each image above its overlay), each atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{GRADCAM_FILE}.json", directory / f"{GRADCAM_FILE}.png"]
    _write_json(paths[0], explanation.to_dict())
    captions = [str(label) for label in explanation.labels]
    if explanation.iou is not None:
        captions = [f"{caption} {iou:.2f}" for caption, iou in zip(captions, explanation.iou)]
    write_durably(paths[1], overlay_figure_png(explanation.images, explanation.maps, title, captions))
    return paths
