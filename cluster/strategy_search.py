"""Choosing an intervention strategy the way the paper does: by the causal bound log P(x | z).

For each strategy, ``samples_per_class`` images per class are generated in this process (the same
images a datagen job with that strategy and ``datagen.seed`` makes first), quantised to 8 bits as a
shard stores them, and passed with the held-out real images through the feature extractor's
penultimate layer; ``datagen.causal_bound`` turns the two feature sets into the estimate. The real
images and the extractor are loaded once and shared by every strategy of a search.

This needs a generator (datagen) and a classifier (trainers), so it lives in cluster.
"""

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from cluster.bound_figure import bound_figure_png
from cluster.config import JobConfig
from cluster.errors import ClusterError, ConfigError
from cluster.strategy_search_config import StrategySearchConfig, grid_strategies, search_settings
from datagen.causal_bound import BoundEstimate, causal_bound
from datagen.directions import Directions, load_directions
from datagen.errors import DatagenError
from datagen.generators.loading import load_generator, pick_device
from datagen.produce import UnitProducer
from datagen.strategies import component_ranges
from datagen.strategy_config import StrategyConfig
from datagen.units import WorkUnit
from shards.files import write_durably
from shards.images import read_stream_images
from trainers.data.config import LoaderConfig
from trainers.errors import TrainError
from trainers.models import load_classifier

CHOSEN_FILE = "chosen-strategy.yaml"
TABLE_FILE = "bounds.json"
FIGURE_FILE = "bounds.png"
# The paper's chosen ImageNet strategy (t = 1, k = 60, s = 100 %), for comparison in reports.
PAPER_CHOSEN_BOUND = -5.162

ProgressUpdate = Callable[[int, int], None]


def strategy_label(strategy: StrategyConfig) -> str:
    """A short name: ``t=1 k=60 s=1`` (scale), ``t=0.5 k=20 o=[-5,5]`` (fixed offsets) or ``observational t=0.5``."""
    if strategy.kind == "observational":
        return f"observational t={strategy.truncation:g}"
    offsets = f"s={strategy.scale:g}" if strategy.offset_range is None else \
        f"o=[{strategy.offset_range[0]:g},{strategy.offset_range[1]:g}]" + (f" s={strategy.scale:g}" if strategy.scale != 1 else "")
    return f"t={strategy.truncation:g} k={strategy.top_k} {offsets}"


@dataclass(frozen=True)
class StrategyScore:
    """One strategy and its causal-bound estimate."""

    strategy: StrategyConfig
    bound: BoundEstimate

    @property
    def label(self) -> str:
        return strategy_label(self.strategy)


@dataclass(frozen=True)
class SearchResult:
    """Every strategy's score in grid order, the chosen one (the highest bound) and what was compared."""

    scores: list[StrategyScore]
    chosen: StrategyScore
    real_stream: str
    real_images: int
    classes: list[int]
    settings: dict = field(default_factory=dict)


def choose(scores: list[StrategyScore]) -> StrategyScore:
    """The strategy with the highest bound (the tightest causal bound); the first of equals."""
    return max(scores, key=lambda score: score.bound.mean)


def _penultimate(model: nn.Module) -> nn.Module:
    """The classifier up to its penultimate layer: torchvision's ResNets and the small CNN all end in ``fc``."""
    model.fc = nn.Identity()
    return model


def load_feature_extractor(job: JobConfig, search: StrategySearchConfig, device: torch.device) -> nn.Module:
    """The configured classifier without its head, in eval mode on ``device``.

    Raises:
        ClusterError: the weights are missing, unreadable or do not fit the architecture (naming the config key).
    """
    extractor = search.feature_extractor
    num_classes = extractor.num_classes or job.train.num_classes
    try:
        model = load_classifier(extractor.weights, extractor.arch, num_classes)
    except TrainError as error:
        raise ClusterError(f"strategy_search.feature_extractor ({extractor.arch}, {num_classes} classes): {error}") from None
    return _penultimate(model).to(device).eval()


def _prepared(images: torch.Tensor, loader: LoaderConfig) -> torch.Tensor:
    """The eval transform on float images in [0, 1]: resize to ``resize_size``, centre-crop ``crop_size``, normalise."""
    if images.shape[-1] != loader.resize_size or images.shape[-2] != loader.resize_size:
        images = F.interpolate(images, size=(loader.resize_size, loader.resize_size), mode="bilinear", antialias=True, align_corners=False)
    top = (loader.resize_size - loader.crop_size) // 2
    images = images[..., top : top + loader.crop_size, top : top + loader.crop_size]
    mean = torch.tensor(loader.mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(loader.std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def _as_stored(images: torch.Tensor) -> torch.Tensor:
    """Generated images as a shard holds them: 8 bits per channel (as datagen's encoder rounds them)."""
    return (images.clamp(0, 1) * 255).round() / 255


class BoundScorer:
    """Scores strategies of one job against its held-out real stream.

    Loads the generator, the directions (if a strategy intervenes), the feature extractor and the
    real images' features once; ``score`` then generates and scores one strategy.
    """

    def __init__(self, job: JobConfig, search: StrategySearchConfig | None = None):
        """Raises: ConfigError, ClusterError, DatagenError, ShardError: one line on any bad input."""
        self.job, self.search = job, search or search_settings(job)
        datagen = job.datagen
        self.device = pick_device(self.search.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("strategy_search.device is cuda, but no CUDA device is visible here; use auto or cpu")
        self.extractor = load_feature_extractor(job, self.search, self.device)
        self.generator = load_generator(datagen.generator.kind, datagen.weights_path(job.local_output_dir), self.device, datagen.generator.precision)
        self._directions: Directions | None = None
        self.real_features, self.real_labels = self._real_features()
        self.classes = sorted(set(self.real_labels.tolist()))

    def _real_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        stream_dir = self.job.store_dir / self.search.real_stream
        images, labels = read_stream_images(stream_dir, self.job.train.data.resize_size)
        keep = torch.ones(len(labels), dtype=torch.bool)
        labels = torch.from_numpy(labels)
        if self.job.datagen.classes is not None:
            keep &= torch.isin(labels, torch.tensor(self.job.datagen.classes))
        if self.search.real_per_class is not None:
            seen: dict[int, int] = {}
            for index, label in enumerate(labels.tolist()):
                seen[label] = seen.get(label, 0) + 1
                keep[index] &= seen[label] <= self.search.real_per_class
        if not keep.any():
            classes = "" if self.job.datagen.classes is None else f" of datagen.classes {self.job.datagen.classes}"
            raise ClusterError(f"strategy_search.real_stream {self.search.real_stream!r}: no committed images{classes} in {stream_dir}")
        labels = labels[keep]
        unknown = sorted({label for label in labels.tolist() if label >= self.generator.num_classes})
        if unknown:
            raise ClusterError(f"strategy_search.real_stream {self.search.real_stream!r}: classes {unknown[:5]} are not classes of "
                               f"{self.generator.generator_id} (it has {self.generator.num_classes}); set datagen.classes")
        pixels = torch.from_numpy(images[keep.numpy()])
        features = [self._features(pixels[start : start + self.search.batch_size].float() / 255)
                    for start in range(0, len(pixels), self.search.batch_size)]
        return torch.cat(features), labels

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            batch = _prepared(images.to(self.device), self.job.train.data)
            return self.extractor(batch).flatten(1).float().cpu()

    def directions_for(self, strategy: StrategyConfig) -> Directions | None:
        """The directions ``strategy`` edits along (loaded once), or None for plain sampling.

        Raises:
            DatagenError: the directions file is missing or does not fit the generator.
        """
        if strategy.kind == "observational":
            return None
        if self._directions is None:
            path = self.job.datagen.directions_path(self.job.local_output_dir)
            self._directions = load_directions(path, latent_dim=self.generator.latent_dim)
        return self._directions

    def generated_features(self, strategy: StrategyConfig) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and classes of ``samples_per_class`` images per class under ``strategy``: the
        first images of seeds 0, 1, ... as a datagen job with ``datagen.seed`` generates them.

        Raises:
            DatagenError: the strategy needs directions that are missing or do not serve it.
        """
        datagen = self.job.datagen
        producer = UnitProducer(self.generator, strategy, self.directions_for(strategy), datagen.seed, datagen.stream, self.search.batch_size)
        wanted = self.search.samples_per_class
        seeds = math.ceil(wanted / strategy.images_per_seed)
        features, labels = [], []
        for class_index in self.classes:
            specs = producer.specs(WorkUnit(class_index, 0, seeds))[:wanted]
            for start in range(0, len(specs), self.search.batch_size):
                batch = specs[start : start + self.search.batch_size]
                classes = torch.tensor([spec.class_index for spec in batch])
                images = self.generator.generate(producer.latents(batch), classes, strategy.truncation)
                features.append(self._features(_as_stored(images)))
                labels.append(classes)
        return torch.cat(features), torch.cat(labels)

    def score(self, strategy: StrategyConfig) -> StrategyScore:
        """The causal-bound estimate of ``strategy`` against the real images."""
        generated, generated_labels = self.generated_features(strategy)
        bound = causal_bound(self.real_features, self.real_labels, generated, generated_labels,
                             self.search.temperature, self.search.estimate, self.search.same_class)
        return StrategyScore(strategy, bound)

    def settings(self) -> dict:
        """What the scores depend on besides the strategy, for the written table."""
        search = self.search
        return {
            "real_stream": search.real_stream, "samples_per_class": search.samples_per_class,
            "estimate": search.estimate, "temperature": search.temperature, "same_class": search.same_class,
            "feature_extractor": search.feature_extractor.model_dump(mode="json"),
            "generator": self.generator.generator_id, "job_seed": self.job.datagen.seed,
        }


def score_strategy(job: JobConfig, strategy: StrategyConfig | None = None, search: StrategySearchConfig | None = None) -> StrategyScore:
    """The causal bound of ``strategy`` (default ``job.datagen.strategy``) against ``search``'s real stream
    (default ``job.strategy_search``)."""
    return BoundScorer(job, search).score(strategy or job.datagen.strategy)


def search_strategies(job: JobConfig, search: StrategySearchConfig | None = None,
                      on_progress: ProgressUpdate = lambda done, total: None) -> SearchResult:
    """Score every strategy of the grid over ``job.datagen.strategy`` and choose the highest bound.

    Args:
        job: the job (its generator, directions, store and classifier preprocessing).
        search: the search settings (default ``job.strategy_search``); the experiment passes its own.
        on_progress: ``on_progress(strategies done, total)``.

    Raises:
        ConfigError: no search settings or an invalid grid; ClusterError, DatagenError, ShardError on
            bad inputs (weights, directions, the real stream), all before any strategy is scored.
    """
    search = search or search_settings(job)
    strategies = grid_strategies(job.datagen.strategy, search.grid)
    scorer = BoundScorer(job, search)
    for strategy in strategies:  # missing directions, or too few for a top_k, fail before the first strategy runs
        try:
            component_ranges(strategy, scorer.directions_for(strategy))
        except DatagenError as error:
            raise ClusterError(f"strategy_search.grid, strategy {strategy_label(strategy)}: {error}") from None
    scores = []
    on_progress(0, len(strategies))
    for done, strategy in enumerate(strategies, 1):
        scores.append(scorer.score(strategy))
        on_progress(done, len(strategies))
    return SearchResult(scores, choose(scores), search.real_stream, len(scorer.real_labels), scorer.classes, scorer.settings())


def chosen_strategy_yaml(result: SearchResult) -> str:
    """The chosen strategy as a strategy file (``datagen.strategy: {file: PATH}`` reads it), with a header saying why."""
    chosen = result.chosen
    header = (f"# genint strategy search: the highest causal bound, log P(x|z) = {chosen.bound.mean:.4f} per real image\n"
              f"# ({chosen.bound.queries} images of stream {result.real_stream!r}, {result.settings.get('estimate')} estimate, "
              f"{result.settings.get('samples_per_class')} generated images per class), of {len(result.scores)} strategies.\n"
              "# Use it in a job config as  datagen.strategy: {file: THIS_FILE}\n")
    settings = chosen.strategy.model_dump(mode="json", exclude={"preset"})
    return header + yaml.safe_dump(settings, sort_keys=False)


def result_json(result: SearchResult) -> dict:
    """The search as JSON: settings, every strategy with its bound, the chosen one."""
    return {
        "settings": result.settings, "real_images": result.real_images, "classes": result.classes,
        "paper_chosen_bound": PAPER_CHOSEN_BOUND,
        "strategies": [
            {"label": score.label, "strategy": score.strategy.model_dump(mode="json"), "log_p_x_given_z": score.bound.mean,
             "log_p_x_given_z_total": score.bound.total, "real_images": score.bound.queries, "chosen": score is result.chosen}
            for score in result.scores
        ],
    }


@dataclass(frozen=True)
class SearchOutputs:
    """Where ``write_search_outputs`` put the table, the figure and the chosen strategy."""

    table: Path
    figure: Path
    chosen: Path


def write_search_outputs(result: SearchResult, directory: Path) -> SearchOutputs:
    """Write ``bounds.json``, ``bounds.png`` (the bound per strategy, as the paper's Fig. 5/6) and
    ``chosen-strategy.yaml`` into ``directory``, each file atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    outputs = SearchOutputs(directory / TABLE_FILE, directory / FIGURE_FILE, directory / CHOSEN_FILE)
    write_durably(outputs.table, (json.dumps(result_json(result), indent=1) + "\n").encode())
    figure = bound_figure_png([score.label for score in result.scores], [score.bound.mean for score in result.scores],
                              result.scores.index(result.chosen), f"log P(x|z) per strategy ({result.real_images} real images "
                              f"of {result.real_stream!r})")
    write_durably(outputs.figure, figure)
    write_durably(outputs.chosen, chosen_strategy_yaml(result).encode())
    return outputs
