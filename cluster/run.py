"""``genint run``: the job's stages on this machine.

Today the job prepares its static streams into the shard store and verifies the store;
generation and training stages join here as they land.
"""

from dataclasses import dataclass
from pathlib import Path

from cluster.config import JobConfig, save_resolved
from cluster.errors import ClusterError
from cluster.progress import progress_bar
from shards.inspect import StreamSummary, summarize_store
from shards.prepare import PrepareReport, prepare_imagefolder
from shards.verify import verify_store


@dataclass
class JobResult:
    """What a run produced."""

    config_hash: str
    prepared: dict[str, PrepareReport]
    streams: list[StreamSummary]
    output_dir: Path


def prepare_streams(config: JobConfig, config_hash: str) -> dict[str, PrepareReport]:
    """Build every static stream the config lists (resuming any that a crash interrupted)."""
    reports = {}
    for stream, prepare in config.shards.prepare.items():
        with progress_bar(f"prepare {stream}") as update:
            reports[stream] = prepare_imagefolder(
                prepare.source,
                config.store_dir,
                stream,
                seed=prepare.seed,
                unit_size=prepare.unit_size,
                max_samples=config.shards.max_samples_per_shard,
                max_bytes=config.shards.max_bytes_per_shard,
                config_hash=config_hash,
                workers=prepare.workers,
                on_progress=update,
            )
    return reports


def run_job(config: JobConfig) -> JobResult:
    """Run the job described by ``config`` and verify what it wrote.

    Raises:
        ClusterError: when the store fails verification.
    """
    digest = save_resolved(config)
    prepared = prepare_streams(config, digest)
    findings, _ = verify_store(config.store_dir)
    problems = [finding for finding in findings if finding.is_problem]
    if problems:
        raise ClusterError(f"shard store {config.store_dir} failed verification: {problems[0]} (+{len(problems) - 1} more)")
    return JobResult(digest, prepared, summarize_store(config.store_dir), config.output_dir)
