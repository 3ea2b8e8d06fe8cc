"""Every loader error that advises a setting names one a job config has: each test reads the advice
out of the error, applies it as ``--set`` (``cluster.config.load_config``, what the CLI does with
``--set``) and the same read then works. An advised path that is not a real config path would fail
to load (unknown keys are errors)."""

import re
from pathlib import Path

import pytest
import yaml

from cluster.config import JobConfig, load_config
from shards.writer import ShardWriter
from tests.test_loader_static import decoded, solid_sample, write_solid
from trainers.data.source import build_batch_source
from trainers.errors import TrainError

STREAM = "s"
# "set train.data.on_bad_sample: skip", "set train.streams.s.when_short: reuse or skip": the first value.
SET_ADVICE = re.compile(r"\bset ([A-Za-z0-9_.]+): ([A-Za-z0-9_]+)")
DOTTED_PATH = re.compile(r"\btrain\.[A-Za-z0-9_.]*[A-Za-z0-9_]")


def job_file(tmp_path: Path, **stream) -> Path:
    """A job reading stream ``s`` with the tests' small loader and ``on_bad_sample: fail``."""
    config = {
        "name": "advice",
        "output_dir": str(tmp_path / "out"),
        "train": {
            "data": {"crop_size": 16, "resize_size": 20, "num_threads": 1, "shuffle_buffer": 8,
                     "poll_interval_s": 0.02, "on_bad_sample": "fail"},
            "streams": {STREAM: {"batch_size": 4} | stream},
        },
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def source(config: JobConfig, stream_dir: Path, growing: bool):
    return build_batch_source(STREAM, stream_dir, config.train.streams[STREAM], config.train.data, 0, 1, "cpu", 0, growing)


def advice(error: pytest.ExceptionInfo, job: Path) -> list[str]:
    """The ``--set`` assignments an error advises; every config path it names must load."""
    message = str(error.value)
    for path in DOTTED_PATH.findall(message):
        load_config(job, [f"{path}={_current(load_config(job), path)}"])  # a real path: no unknown key
    assignments = [f"{path}={value}" for path, value in SET_ADVICE.findall(message)]
    assert assignments, f"no 'set PATH: VALUE' advice in: {message}"
    return assignments


def _current(config: JobConfig, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def truncate_first_shard(stream_dir: Path) -> None:
    first = min(stream_dir.glob("*.tar"))
    first.write_bytes(first.read_bytes()[:1500])


def test_a_damaged_static_shard_is_skipped_once_the_advice_is_applied(tmp_path):
    stream_dir = tmp_path / STREAM
    write_solid(stream_dir, range(1, 21, 2), max_samples=5)
    truncate_first_shard(stream_dir)
    job = job_file(tmp_path)
    with pytest.raises(TrainError, match="damaged shards") as error:
        source(load_config(job), stream_dir, growing=False)
    assignments = advice(error, job)
    assert assignments == ["train.data.on_bad_sample=skip"]
    fixed = source(load_config(job, assignments), stream_dir, growing=False)
    assert {index for index, _ in decoded(fixed.next_batch())} <= set(range(11, 21, 2))
    assert fixed.stats.bad_samples == 5


def test_a_damaged_growing_shard_is_skipped_once_the_advice_is_applied(tmp_path):
    stream_dir = tmp_path / STREAM
    with ShardWriter(stream_dir, STREAM, "gen0", "testhash", max_samples=4) as writer:
        write_solid(stream_dir, range(1, 17, 2), writer)
    truncate_first_shard(stream_dir)
    job = job_file(tmp_path)
    with pytest.raises(TrainError, match="damaged shards") as error:
        source(load_config(job), stream_dir, growing=True).next_batch()
    assignments = advice(error, job)
    assert assignments == ["train.data.on_bad_sample=skip"]
    fixed = source(load_config(job, assignments), stream_dir, growing=True)
    assert {index for index, _ in decoded(fixed.next_batch())} == set(range(9, 17, 2))
    assert fixed.stats.bad_samples == 4


def test_an_undecodable_image_is_skipped_once_the_advice_is_applied(tmp_path):
    stream_dir = tmp_path / STREAM
    with ShardWriter(stream_dir, STREAM, "w0", "testhash", max_samples=4) as writer:
        for index in range(8):
            sample = solid_sample(index)
            if index == 5:
                sample = {"__key__": sample["__key__"], "jpg": b"\xff\xd8\xff" + b"not a jpeg" * 8, "cls": 0, "json": {}}
            writer.write(sample)
    job = job_file(tmp_path, batch_size=8)
    with pytest.raises(TrainError, match="undecodable image") as error:
        source(load_config(job), stream_dir, growing=False).next_batch()
    assignments = advice(error, job)
    assert assignments == ["train.data.on_bad_sample=skip"]
    fixed = source(load_config(job, assignments), stream_dir, growing=False)
    seen = {index for index, _ in decoded(fixed.next_batch())}
    assert 5 not in seen and {1, 3, 7} <= seen and fixed.stats.bad_samples >= 1


def test_a_short_growing_stream_reads_once_the_advice_is_applied(tmp_path):
    stream_dir = tmp_path / STREAM
    with ShardWriter(stream_dir, STREAM, "gen0", "testhash", max_samples=4) as writer:
        write_solid(stream_dir, range(1, 5, 2), writer)  # 2 samples for a batch of 4
    job = job_file(tmp_path, when_short="wait", wait_timeout_s=0.2)
    with pytest.raises(TrainError, match="waited 0.2 s") as error:
        source(load_config(job), stream_dir, growing=True).next_batch()
    assignments = advice(error, job)
    assert assignments == ["train.streams.s.when_short=reuse"]
    fixed = source(load_config(job, assignments), stream_dir, growing=True)
    assert {index for index, _ in decoded(fixed.next_batch())} == {1, 3}
    assert fixed.stats.reused_batches == 1
