"""The correlation analysis (GenInt, seed 000, Fig. 3 and supplement section 10): do the nuisances
a generator intervenes on predict the label in a stream?

A regressor learns image -> intervention offsets on a generated stream (cluster/nuisance_regressor.py)
and predicts the nuisances of every image of each analysed stream. There a small MLP learns
nuisances -> label on one share of the stream and is scored on the held-out rest, stratified by
class. The stream's correlation is that held-out accuracy as a multiple of chance, 1 / the number of
classes in the stream: near 1 means the nuisances say nothing about the label (what interventional
data should give), well above 1 that the stream ties them to it (the paper: up to 8x on ImageNet).
Like the paper's, the estimate is a lower bound: the regressor sees only the nuisances the
generator's directions move.
"""

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.table import Table

from cluster.config import JobConfig
from cluster.correlation_config import CorrelationConfig, NuisanceClassifierConfig
from cluster.errors import ClusterError, ConfigError
from cluster.nuisance_regressor import RegressorFit, intervention_targets, train_nuisance_regressor
from shards.errors import ShardError
from shards.files import write_durably
from shards.images import StreamSamples, read_stream_samples
from shards.reader import stream_dirs

CORRELATION_FILE = "correlation.json"
PAPER_FIGURE_3 = "paper (Fig. 3, ImageNet): original data up to 8x chance, GenInt's interventional data near 1x"


@dataclass(frozen=True)
class HeldOutScore:
    """An MLP's accuracy on a held-out share, beside chance (1 / classes there)."""

    samples: int
    classes: int
    accuracy: float
    majority_accuracy: float  # always answering the share's most frequent class

    @property
    def chance(self) -> float:
        return 1.0 / self.classes

    @property
    def multiple_of_chance(self) -> float:
        return self.accuracy / self.chance

    def to_dict(self) -> dict:
        return {**asdict(self), "chance": self.chance, "multiple_of_chance": self.multiple_of_chance}


@dataclass(frozen=True)
class StreamCorrelation:
    """One stream's nuisance -> label correlation: its own held-out score, and optionally the
    evaluation stream's held-out share scored by the same MLP."""

    stream: str
    samples: int
    fit_samples: int
    held_out: HeldOutScore
    on_evaluation_stream: HeldOutScore | None = None

    def to_dict(self) -> dict:
        record = {"stream": self.stream, "samples": self.samples, "fit_samples": self.fit_samples,
                  "held_out": self.held_out.to_dict()}
        if self.on_evaluation_stream is not None:
            record["on_evaluation_stream"] = self.on_evaluation_stream.to_dict()
        return record


@dataclass(frozen=True)
class CorrelationResult:
    """The regressor's fit, each analysed stream's scores, and the settings that made them."""

    regressor: RegressorFit
    streams: list[StreamCorrelation]
    evaluation_stream: str | None
    config: dict

    def to_dict(self) -> dict:
        return {"regressor": self.regressor.to_dict(), "evaluation_stream": self.evaluation_stream,
                "streams": {entry.stream: entry.to_dict() for entry in self.streams}, "paper": PAPER_FIGURE_3,
                "config": self.config}


def _check_streams(store_dir: Path, config: CorrelationConfig) -> None:
    """Every stream the config names is in the store, before anything is read or trained."""
    try:
        available = sorted(path.name for path in stream_dirs(store_dir) if path != Path(store_dir))
    except ShardError as error:  # "not a directory" / "no manifest": the config points at no store
        raise ConfigError(f"correlation: the store {store_dir} holds no streams ({error})") from None
    named = [("correlation.regressor_stream", config.regressor_stream)]
    named += [(f"correlation.streams[{index}]", stream) for index, stream in enumerate(config.streams)]
    if config.evaluation_stream is not None:
        named.append(("correlation.evaluation_stream", config.evaluation_stream))
    for path, stream in named:
        if stream not in available:
            raise ConfigError(f"{path}: stream {stream!r} is not in the store {store_dir} (streams there: {', '.join(available)})")


def _stratified_split(labels: np.ndarray, fraction: float, seed: int, stream: str) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, held-out rows) with every class in both, the held-out share ``fraction``."""
    from sklearn.model_selection import train_test_split

    classes = np.unique(labels)
    if len(classes) < 2:
        raise ClusterError(f"correlation: stream {stream!r} holds samples of {len(classes)} classes; "
                           "predicting its label needs at least 2")
    try:
        return train_test_split(np.arange(len(labels)), test_size=fraction, stratify=labels, random_state=seed)
    except ValueError as error:
        raise ClusterError(f"correlation: stream {stream!r} ({len(labels)} samples, {len(classes)} classes) cannot be split "
                           f"by class with correlation.held_out_fraction={fraction} ({error})") from None


def _fit_classifier(nuisances: np.ndarray, labels: np.ndarray, config: NuisanceClassifierConfig, seed: int):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classifier = make_pipeline(StandardScaler(), MLPClassifier(
        hidden_layer_sizes=tuple(config.hidden_layers), alpha=config.weight_decay, learning_rate_init=config.lr,
        max_iter=config.max_epochs, random_state=seed))
    with warnings.catch_warnings():
        # max_epochs bounds the fit by design; stopping there is not a fault worth a warning per stream.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return classifier.fit(nuisances, labels)


def _score(classifier, nuisances: np.ndarray, labels: np.ndarray) -> HeldOutScore:
    counts = np.unique(labels, return_counts=True)[1]
    accuracy = float((classifier.predict(nuisances) == labels).mean())
    return HeldOutScore(samples=len(labels), classes=len(counts), accuracy=accuracy,
                        majority_accuracy=float(counts.max() / len(labels)))


def _stream_correlation(stream: str, samples: dict[str, StreamSamples], nuisances: dict[str, np.ndarray],
                        splits: dict[str, tuple[np.ndarray, np.ndarray]], config: CorrelationConfig) -> StreamCorrelation:
    """Fit the stream's MLP on its fitting share; score its held-out share (and the evaluation stream's)."""
    labels, (fit_rows, held_rows) = samples[stream].labels, splits[stream]
    classifier = _fit_classifier(nuisances[stream][fit_rows], labels[fit_rows], config.classifier, config.seed)
    evaluation = None
    if config.evaluation_stream is not None:
        rows = splits[config.evaluation_stream][1]
        evaluation = _score(classifier, nuisances[config.evaluation_stream][rows], samples[config.evaluation_stream].labels[rows])
    return StreamCorrelation(stream, len(labels), len(fit_rows), _score(classifier, nuisances[stream][held_rows], labels[held_rows]),
                             evaluation)


def _regressor_device(name: str):
    """``correlation.device`` as a torch device; CUDA only where this process sees it."""
    import torch

    from datagen.generators.loading import pick_device

    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("correlation.device: cuda, but no CUDA device is visible here (use auto or cpu)")
    return pick_device(name)


@contextmanager
def _cpu_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch and BLAS threads (None: as they are), then restore torch's."""
    import torch
    from threadpoolctl import threadpool_limits

    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(before)


def correlation_analysis(store_dir: Path, config: CorrelationConfig) -> CorrelationResult:
    """Measure each configured stream's nuisance -> label correlation as a multiple of chance.

    Args:
        store_dir: the shard store holding every stream the config names.
        config: the regressor stream, the analysed streams, their held-out share, models, seed.

    Returns:
        The regressor's fit and, per analysed stream, the MLP's held-out accuracy beside chance.

    Raises:
        ConfigError: a named stream is not in the store, or the regressor stream records no
            intervention offsets (an observational or real stream).
        ClusterError: a stream too small to split by class, a malformed provenance record.
        ShardError: a damaged shard or undecodable sample.
    """
    _check_streams(store_dir, config)
    device = _regressor_device(config.device)
    scored = [*config.streams, *([config.evaluation_stream] if config.evaluation_stream else [])]
    samples: dict[str, StreamSamples] = {stream: read_stream_samples(Path(store_dir) / stream, config.image_size)
                                         for stream in dict.fromkeys([config.regressor_stream, *scored])}
    teacher = samples[config.regressor_stream]
    targets = intervention_targets(teacher.provenance, teacher.keys, config.regressor_stream)
    if not targets.recorded.any():
        raise ConfigError(f"correlation.regressor_stream: stream {config.regressor_stream!r} records no intervention offsets "
                          "(observational or real samples); name a stream generated with an intervention strategy")
    # Split first: a stream too small to split by class fails before the regressor trains.
    splits = {stream: _stratified_split(samples[stream].labels, config.held_out_fraction, config.seed, stream) for stream in scored}
    with _cpu_threads(config.cpu_threads):
        regressor, fit = train_nuisance_regressor(teacher.images, targets, config.regressor_stream, config.regressor,
                                                  config.seed, device)
        nuisances = {stream: regressor.predict(samples[stream].images) for stream in scored}
        results = [_stream_correlation(stream, samples, nuisances, splits, config) for stream in config.streams]
    return CorrelationResult(fit, results, config.evaluation_stream, config.model_dump(mode="json"))


def job_correlation_config(job: JobConfig) -> CorrelationConfig:
    """The job's ``correlation:`` section, or its defaults where the job has none."""
    return job.correlation or CorrelationConfig()


def correlation_output(job: JobConfig) -> Path:
    """Where ``genint analyse correlation`` writes the job's results."""
    return job_correlation_config(job).output or job.local_output_dir / CORRELATION_FILE


def write_correlation(result: CorrelationResult, path: Path) -> None:
    """The results as JSON, written atomically (the directory is created if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_durably(path, (json.dumps(result.to_dict(), indent=2) + "\n").encode())


def correlation_rows(result: CorrelationResult) -> tuple[list[str], list[list[str]]]:
    """The per-stream table as a header and rows of text (for the console table, or a report's Markdown)."""
    header = ["stream", "samples", "held out", "classes", "accuracy", "chance", "x chance"]
    if result.evaluation_stream is not None:
        header.append(f"x chance on {result.evaluation_stream}")
    rows = []
    for entry in result.streams:
        score = entry.held_out
        row = [entry.stream, str(entry.samples), str(score.samples), str(score.classes), f"{score.accuracy:.3f}",
               f"{score.chance:.3f}", f"{score.multiple_of_chance:.2f}"]
        if entry.on_evaluation_stream is not None:
            row.append(f"{entry.on_evaluation_stream.multiple_of_chance:.2f}")
        rows.append(row)
    return header, rows


def regressor_line(fit: RegressorFit) -> str:
    """One line on how well the regressor learned its stream."""
    return (f"regressor {fit.model} on {fit.stream}: {fit.components} components, L1 train {fit.train_l1:.3f}, "
            f"held-out {fit.held_out_l1:.3f} (median guess {fit.constant_l1:.3f})")


def correlation_table(result: CorrelationResult) -> Table:
    """The per-stream multiples of chance, the regressor's errors and the paper's figure in the caption."""
    header, rows = correlation_rows(result)
    table = Table(title="correlation of the predicted nuisances with the label (multiple of chance, held-out share)",
                  caption=f"{regressor_line(result.regressor)}. {PAPER_FIGURE_3}")
    for column in header:
        table.add_column(column, justify="left" if column == "stream" else "right")
    for row in rows:
        table.add_row(*row)
    return table
