"""What the loaders say when a stream holds bad data, naming the setting that lets training go on.

``LoaderConfig`` is a job's ``train.data`` (``trainers.config.TrainConfig.data``), so the advice
names ``train.data.on_bad_sample``: the path ``--set`` and the YAML file take.
"""

from shards.reader import DamagedShard
from trainers.errors import TrainError

ON_BAD_SAMPLE = "train.data.on_bad_sample"


def damaged_shards_error(stream: str, damaged: list[DamagedShard]) -> TrainError:
    """The error for committed shards the reader checks refused (``on_bad_sample: fail``)."""
    return TrainError(
        f"stream {stream}: {len(damaged)} damaged shards, first {damaged[0].reason}; run `genint shards verify`, "
        f"or set {ON_BAD_SAMPLE}: skip to train without them"
    )


def bad_samples_error(stream: str, reason: str, where: list[str]) -> TrainError:
    """The error for samples that could not be read or decoded (``on_bad_sample: fail``)."""
    return TrainError(
        f"stream {stream}: {reason}: {', '.join(where)}; remove the shard or set {ON_BAD_SAMPLE}: skip"
    )
