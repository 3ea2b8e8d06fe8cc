"""Checkpoints through DeepSpeed's ``save_checkpoint`` / ``load_checkpoint``.

DeepSpeed stores the model, optimiser and LR schedule; its ``client_state`` holds the step and,
for every rank, the sources' positions and the RNG states, so a resumed run continues the same
sample sequence. Only rank 0 writes ``client_state``, so the ranks' states are gathered to it
first. Every rank must call ``save`` and ``restore`` (they are collective).

The sources' states carry ``SOURCE_STATE_VERSION``: a checkpoint whose states are of another
layout (or from before the layout was versioned) is refused, never misread.

Resuming with another worker count (``genint scale JOB --trainers N``): the weights, step and LR
schedule resume, and ZeRO's optimizer state when its partition count still fits. A growing
stream merges the old ranks' per-shard read counts and every new rank reads the unread rest of
the shards it now owns (``GrowingReader.load_rescaled_state_dicts``), so no sample committed
before the checkpoint is trained on twice before the stream runs short. (One exception, with
``train.data.prefetch_queue_depth`` >= 3: once a bad sample made a batch take rows from the next
prefetched one, the rows of that one already handed out count as unread, so up to
``batch_size - 1`` samples per old rank repeat.) A static stream
restarts: each new rank reads its new part from epoch 0, so what the old ranks had read of the
interrupted epoch is read again (at most one pass over the stream) and the epoch count and the
epochs' tar orders start over. Its position is a DALI reader checkpoint tied to one
``shard_id``/``num_shards`` split, with a shuffle buffer whose content the state does not name,
so the interrupted epoch's unread samples cannot be picked out for another split. The RNG
states are per rank; new ranks keep their fresh seeds. Sources without
``load_rescaled_state_dicts`` (``MemorySource``) restart too.

Everything genint puts in ``client_state`` is plain data (numbers, strings, bytes, lists, dicts,
tensors), so checkpoints load with ``torch.load(weights_only=True)``. A save ends with a record
of every file's sha256 and then ``latest``; a restore checks that record before DeepSpeed loads
anything (``trainers.checkpoint_files``). With a ``mirror`` URL every save is copied to object
storage and a restore starts from the bucket's newest step, never from a local step the bucket does
not hold (``trainers.checkpoint_mirror``), so a job resumes on another machine from its bucket.
"""

import logging
import random
import socket
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.distributed as dist

from shards.errors import ShardError
from shards.storage import S3Url
from trainers import checkpoint_mirror
from trainers.batches import BatchSource
from trainers.checkpoint_files import (
    genint_tags,
    latest_tag_dir,
    remove_checkpoints,
    remove_tags,
    tag_name,
    verify_tag,
    write_latest,
    write_record,
)
from trainers.errors import TrainError

logger = logging.getLogger(__name__)

# The layout of the per-rank source states in ``client_state["ranks"]``. Bump it whenever a source's
# ``state_dict`` changes shape (DaliBatchSource, its readers and decode stage, MemorySource), so a
# checkpoint of the old layout is refused instead of misread. Checkpoints without the field hold
# version 1 (before rescaled runs kept the growing streams' positions).
SOURCE_STATE_VERSION = 2


@runtime_checkable
class RescalableSource(Protocol):
    """A batch source that can continue from the states of a run with another worker count."""

    def load_rescaled_state_dicts(self, states: list[dict]) -> bool:
        """Take up this rank's part of what the old ranks' ``state_dict``s (``states[r]``: old rank r's) say was read.

        Returns:
            True when the stream continues where the old ranks left it, False when it starts afresh.
        """


def rng_state() -> dict:
    """The state of every RNG the step may touch (python, numpy, torch CPU and CUDA), as plain data:
    python's and numpy's tuples become ints and lists (numpy's own state holds an ndarray, which a
    weights-only load refuses)."""
    version, internal, gauss_next = random.getstate()
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss_next],
        "numpy": [kind, keys.tolist(), position, has_gauss, cached_gaussian],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` returned."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _is_node_leader() -> bool:
    """Whether this rank is the lowest rank on its host (the one that copies the host's files)."""
    hosts: list[str] = [""] * dist.get_world_size()
    dist.all_gather_object(hosts, socket.gethostname())
    return hosts.index(hosts[dist.get_rank()]) == dist.get_rank()


def save(engine, directory: Path, step: int, sources: dict[str, BatchSource], keep: int, mirror: S3Url | None = None) -> Path:
    """Save a checkpoint of ``step`` on every rank; keep the newest ``keep``. Returns its path.

    ``mirror``: also copy it to this ``s3://`` prefix (each node its own files, then rank 0 the record and ``latest``).
    """
    local = {"sources": {name: source.state_dict() for name, source in sources.items()}, "rng": rng_state()}
    ranks: list[dict] = [{} for _ in range(dist.get_world_size())]
    dist.all_gather_object(ranks, local)
    tag = tag_name(step)
    # save_latest=False: ``latest`` moves only once the record below vouches for every file, so a
    # kill mid-save leaves ``latest`` on the previous complete checkpoint.
    engine.save_checkpoint(str(directory), tag=tag, client_state={"step": step, "source_state_version": SOURCE_STATE_VERSION, "ranks": ranks}, save_latest=False)
    # save_checkpoint returns once this rank wrote its part; wait for all before recording and pruning.
    dist.barrier()
    older = [path for path in genint_tags(directory) if path.name < tag]
    kept = older[max(0, len(older) - (keep - 1)):]
    if mirror is not None:
        if _is_node_leader():
            checkpoint_mirror.upload_files(directory / tag, mirror)
        dist.barrier()  # every node's files are up before the record and ``latest`` commit the step
    if dist.get_rank() == 0:
        write_record(directory / tag)
        write_latest(directory, tag)
        if mirror is not None:
            checkpoint_mirror.commit_upload(directory / tag, mirror, [path.name for path in kept])
        remove_tags([path for path in older if path not in kept])
    return directory / tag


def _zero_partitions(tag_dir: Path) -> int:
    """ZeRO optimizer partitions in a checkpoint: one per data-parallel rank (0 without ZeRO)."""
    return len(list(tag_dir.glob("*zero_pp_rank_*_optim_states.pt")))


def _checked_latest(directory: Path) -> tuple[Path | None, str | None]:
    """(the verified step directory ``latest`` names, None when there is no ``latest``; or the refusal)."""
    try:
        tag_dir = latest_tag_dir(directory)
        if tag_dir is not None:
            verify_tag(tag_dir)
        return tag_dir, None
    except TrainError as error:
        return None, str(error)


def _follow_mirror(directory: Path, mirror: S3Url) -> None:
    """Make the local directory hold the bucket's newest step (on every node), the one a restore loads.

    The bucket is the job's record; the local directory is a scratch copy that may be left from
    another run of the same job name and URL (a bucket emptied or made again), or hold a step that
    a kill stopped before its commit to the bucket. So when the local ``latest`` names another step
    than the bucket's, genint's local checkpoints are removed and the bucket's step (if any) is
    downloaded: a run never resumes from a step its bucket does not hold.
    """
    verdict = [None]
    if dist.get_rank() == 0:
        try:
            remote = checkpoint_mirror.remote_latest(mirror)
            local = latest_tag_dir(directory)
            verdict = [(remote,) if (local.name if local is not None else None) != remote else None]
        except (TrainError, ShardError) as error:
            verdict = [TrainError(str(error))]
    dist.broadcast_object_list(verdict, src=0)
    if isinstance(verdict[0], TrainError):
        raise verdict[0]
    if verdict[0] is not None:
        (remote,) = verdict[0]
        if _is_node_leader():
            logger.info("local checkpoints in %s are not the bucket's newest step (%s): replacing them", directory, remote)
            remove_checkpoints(directory)
            if remote is not None:
                checkpoint_mirror.download_step(mirror, remote, directory)
        dist.barrier()  # every node holds the bucket's step (or none) before rank 0 checks it and every rank loads it


def restore(engine, directory: Path, sources: dict[str, BatchSource], mirror: S3Url | None = None) -> int:
    """Load the newest checkpoint in ``directory`` if there is one. Returns its step (0: none).

    ``mirror``: first make the local directory hold this ``s3://`` prefix's newest step (``_follow_mirror``).

    Rank 0 checks ``latest`` and the step's record and tells every rank the verdict, so all load the
    same step or all raise the same error. With the checkpoint's worker count every source and RNG
    continues exactly. With another count (see the module doc) the weights, step and LR schedule
    resume, ZeRO's optimizer state only if its partitions still fit (DeepSpeed cannot repartition
    it), growing streams continue with their unread samples and static streams restart their epoch.

    Raises:
        TrainError: ``latest`` or a file of the step it names fails the checks (not written by genint,
            changed since, outside the directory), or its source states are of another version.
    """
    if mirror is not None:
        _follow_mirror(directory, mirror)
    verdict = [_checked_latest(directory) if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(verdict, src=0)
    tag_dir, refused = verdict[0]
    if refused is not None:
        raise TrainError(refused)
    if tag_dir is None:
        return 0
    partitions = _zero_partitions(tag_dir)
    # Without the optimizer state DeepSpeed refills ZeRO's fp32 partitions from the loaded weights.
    keep_optimizer = partitions in (0, dist.get_world_size())
    path, client_state = engine.load_checkpoint(str(directory), tag=tag_dir.name, load_optimizer_states=keep_optimizer)
    if path is None:
        return 0
    _check_source_state_version(tag_dir, client_state)
    ranks = client_state["ranks"]
    if len(ranks) == dist.get_world_size():
        local = ranks[dist.get_rank()]
        for name, source in sources.items():
            if name in local["sources"]:
                source.load_state_dict(local["sources"][name])
        set_rng_state(local["rng"])
    else:
        _restore_rescaled(tag_dir, ranks, sources, keep_optimizer)
    return client_state["step"]


def _check_source_state_version(tag_dir: Path, client_state: dict) -> None:
    version = client_state.get("source_state_version", 1)
    if version != SOURCE_STATE_VERSION:
        raise TrainError(
            f"checkpoint {tag_dir}: its data positions are source-state version {version}, this genint reads "
            f"version {SOURCE_STATE_VERSION}; resume it with the genint that wrote it, or move {tag_dir.parent} "
            "away to train from the start"
        )


def _restore_rescaled(tag_dir: Path, ranks: list[dict], sources: dict[str, BatchSource], keep_optimizer: bool) -> None:
    """Give this rank its part of the old ranks' source states (a run saved by another worker count)."""
    restarted = []
    for name, source in sources.items():
        # A stream the old run did not read (its batch size was 0 then) starts afresh.
        saved = all(name in old["sources"] for old in ranks)
        if not (saved and isinstance(source, RescalableSource)
                and source.load_rescaled_state_dicts([old["sources"][name] for old in ranks])):
            restarted.append(name)
    if dist.get_rank() == 0:
        continued = sorted(set(sources) - set(restarted))
        logger.warning("checkpoint %s was written by %d workers, now %d: streams continuing with their unread samples: %s; "
                       "restarting: %s%s", tag_dir, len(ranks), dist.get_world_size(), ", ".join(continued) or "none",
                       ", ".join(sorted(restarted)) or "none", "; ZeRO optimizer state restarts" if not keep_optimizer else "")
