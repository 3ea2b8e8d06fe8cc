"""What the training loop reports, and the callback objects that receive it.

Workers build one ``StepReport`` per step and send them to the driver in ``WorkerReport``s; the
driver calls each callback's ``on_start`` when the workers are up (and again after every restart
of the worker group), hands every rank's reports to ``on_step`` (the cluster layer turns them into
Prometheus metrics), then ``on_checkpoint`` and ``on_end``. Reports are plain data so they cross
Ray as dicts.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trainers.batches import StreamStats


@dataclass
class StepReport:
    """One rank's step: what it read, how long it took and the losses (Eq. 1 terms).

    In the training loop ``trainers.step.train_step`` leaves the losses and extra figures on the
    device as 0-d tensors; ``trainers.step.read_back`` turns them into floats before a report leaves
    the worker.
    """

    step: int
    rank: int
    samples: dict[str, int]
    stream_losses: dict[str, float]
    loss: float
    step_s: float
    data_wait_s: float
    lr: float
    stats: dict[str, StreamStats] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain nested dicts (what ``ray.train.report`` carries)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "StepReport":
        stats = {stream: StreamStats(**values) for stream, values in data["stats"].items()}
        return cls(**{**data, "stats": stats})


@dataclass
class StartReport:
    """The worker group is up and has restored its checkpoint; the next step is ``step + 1``."""

    step: int  # the step it resumed from (0: a fresh start)
    workers: int


@dataclass
class CheckpointReport:
    """A checkpoint every rank has finished writing."""

    step: int
    path: Path


@dataclass
class WorkerReport:
    """What one rank sends the driver at a report (every rank reports at the same steps).

    A run's first report comes before its first step, once the rank has restored its checkpoint,
    and carries only ``started``; later ones carry the steps since the last report and, at a
    checkpoint step, the ``checkpoint`` the rank has saved.
    """

    steps: list[StepReport]
    checkpoint: CheckpointReport | None = None
    started: int | None = None  # the step the run resumed from (0: a fresh start); first report only

    def to_dict(self) -> dict:
        """Plain nested dicts: ``ray.train.report`` takes a dict, and plain data lets Ray Train's
        controller and the report queue's actor pass it on without importing genint (and torch)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "WorkerReport":
        checkpoint = data["checkpoint"]
        return cls([StepReport.from_dict(step) for step in data["steps"]],
                   CheckpointReport(checkpoint["step"], Path(checkpoint["path"])) if checkpoint else None,
                   data["started"])


@dataclass
class TrainResult:
    """How a run ended: the last step, the newest checkpoint and the last loss of each rank."""

    steps: int
    checkpoint: Path | None
    final_losses: dict[int, float]


class TrainCallback:
    """Base class: override the hooks you need. They run in the driver process, in step order."""

    def on_start(self, report: StartReport) -> None:
        """Called when the workers are ready to take their first step (after each restart too)."""

    def on_step(self, report: StepReport) -> None:
        """Called once per rank per step."""

    def on_checkpoint(self, report: CheckpointReport) -> None:
        """Called once per checkpoint, after every rank has saved it."""

    def on_end(self, result: TrainResult) -> None:
        """Called once when the run has finished."""


class History(TrainCallback):
    """Keeps every report in memory (notebooks, tests, the end-of-run summary)."""

    def __init__(self) -> None:
        self.steps: list[StepReport] = []
        self.checkpoints: list[CheckpointReport] = []
        self.result: TrainResult | None = None

    def on_step(self, report: StepReport) -> None:
        self.steps.append(report)

    def on_checkpoint(self, report: CheckpointReport) -> None:
        self.checkpoints.append(report)

    def on_end(self, result: TrainResult) -> None:
        self.result = result

    def losses(self, rank: int = 0) -> list[float]:
        """Total loss of each step of ``rank``, in step order."""
        return [report.loss for report in self.steps if report.rank == rank]


class JsonlLog(TrainCallback):
    """Appends every step report to a JSON-lines file, flushed per line (survives a kill)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_step(self, report: StepReport) -> None:
        with self.path.open("a") as file:
            file.write(json.dumps(report.to_dict()) + "\n")

    @staticmethod
    def read(path: Path) -> list[StepReport]:
        """The reports a ``JsonlLog`` wrote, in order."""
        return [StepReport.from_dict(json.loads(line)) for line in Path(path).read_text().splitlines()]
