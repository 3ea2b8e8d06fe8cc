"""The training stage of a job: shard-backed sources for every rank, Ray Train, a progress display."""

from cluster.config import JobConfig
from cluster.errors import ClusterError
from shards.locations import S3Url
from shards.stores import open_manifest
from trainers.callbacks import StepReport, TrainCallback, TrainResult
from trainers.loop import ShouldStop
from trainers.ray_train import train
from trainers.shard_sources import ShardSourceFactory, with_epoch_length


class StepProgress(TrainCallback):
    """A progress bar over the run's steps (rank 0's reports) with the latest loss."""

    def __init__(self, update, max_steps: int):
        self.update, self.max_steps = update, max_steps
        self.last: StepReport | None = None

    def on_step(self, report: StepReport) -> None:
        if report.rank == 0:
            self.last = report
            self.update(report.step, self.max_steps)


def check_streams_committed(config: JobConfig, growing: frozenset[str] = frozenset()) -> None:
    """Fail before any worker starts when a static stream the trainer reads has no committed shards."""
    for stream in config.train.active_streams:
        if stream not in growing and not open_manifest(config.store_dir / stream).shards():
            raise ClusterError(
                f"train.streams.{stream}: no committed shards in {config.store_dir / stream}; "
                f"prepare it (shards.prepare.{stream}) or generate it first"
            )


def train_job(config: JobConfig, update, growing: frozenset[str] = frozenset(), callbacks: list[TrainCallback] = (),
              use_gpu: bool = False, should_stop: ShouldStop | None = None) -> tuple[TrainResult, StepReport | None]:
    """Train the job's classifier on its shard streams (Ray must be initialised).

    Args:
        update: ``update(step, max_steps)`` of a progress bar.
        growing: streams another service is still writing (followed through the manifest).
        should_stop: asked after every step; True ends the run early at a checkpoint (see ``trainers.ray_train.train``).

    Returns:
        the run's result and rank 0's last step report (losses per stream).
    """
    # Ray Train workers run in their own working directories: hand them absolute paths.
    store = config.store_dir if isinstance(config.store_dir, S3Url) else config.store_dir.resolve()
    factory = ShardSourceFactory(store, config.train.data, config.train.seed, growing, config.train.causal_variables)
    train_config = with_epoch_length(config.train, config.store_dir)
    progress = StepProgress(update, config.train.max_steps)
    result = train(train_config, factory, config.local_output_dir.resolve() / "train", [progress, *callbacks], use_gpu=use_gpu,
                   should_stop=should_stop, checkpoint_url=config.checkpoint_url)
    return result, progress.last
