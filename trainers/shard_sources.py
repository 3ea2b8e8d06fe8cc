"""The ``SourceFactory`` of a real job: DALI batch sources over the job's shard store."""

from pathlib import Path

import torch

from shards.locations import S3Url, stream_location
from shards.stores import open_manifest
from trainers.config import StreamConfig, TrainConfig
from trainers.data.config import LoaderConfig
from trainers.data.source import DaliBatchSource, build_batch_source


class ShardSourceFactory:
    """Builds each read stream's DALI source from ``store_dir/<stream>`` (picklable, for Ray workers)."""

    def __init__(self, store_dir: "Path | S3Url", loader: LoaderConfig, seed: int, growing: frozenset[str] = frozenset(),
                 variables: tuple[str, ...] = ()) -> None:
        """Args:
        store_dir: the shard store root, one subdirectory (or ``s3://`` prefix) per stream.
        loader: decode, augmentation and bad-sample settings (``train.data``).
        seed: the run's seed (``train.seed``).
        growing: streams datagen may still be writing; they are followed through the manifest.
        variables: the causal variables every batch carries (``TrainConfig.causal_variables``).
        """
        self.store_dir, self.loader, self.seed, self.growing = stream_location(store_dir), loader, seed, frozenset(growing)
        self.variables = tuple(variables)

    def __call__(self, stream: str, config: StreamConfig, rank: int, world_size: int, device: torch.device) -> DaliBatchSource:
        return build_batch_source(
            stream, self.store_dir / stream, config, self.loader, rank, world_size, str(device), self.seed, stream in self.growing,
            self.variables,
        )


def with_epoch_length(config: TrainConfig, store_dir: "Path | S3Url", stream: str = "original") -> TrainConfig:
    """``config`` with ``steps_per_epoch`` measured from ``stream``'s manifest when it is unset.

    An epoch is one pass of every rank over ``stream``'s committed samples (the static stream the
    paper's "lr /10 every 30 epochs" counts); an explicit ``steps_per_epoch`` is kept.
    """
    if config.steps_per_epoch is not None or stream not in config.active_streams:
        return config
    samples = sum(record.samples for record in open_manifest(stream_location(store_dir) / stream).shards())
    per_step = config.streams[stream].batch_size * config.workers
    return config.model_copy(update={"steps_per_epoch": max(1, samples // per_step)})
