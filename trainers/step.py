"""One mixed training step: a batch from every stream, one forward, the objective, one update."""

import copy
import time
from dataclasses import dataclass

import torch

from trainers.batches import BatchSource, StreamBatch
from trainers.callbacks import StepReport
from trainers.objectives import Objective, Segment


@dataclass
class MixedBatch:
    """The streams' batches concatenated in config order, and which rows came from which stream."""

    images: torch.Tensor
    labels: torch.Tensor
    segments: list[Segment]


def mix_batches(batches: dict[str, StreamBatch | None], weights: dict[str, float]) -> MixedBatch | None:
    """Concatenate the streams' batches (None: the stream skips this step). None if all skipped."""
    present = [(stream, batch) for stream, batch in batches.items() if batch is not None]
    if not present:
        return None
    segments, start = [], 0
    for stream, batch in present:
        segments.append(Segment(stream, weights[stream], start, start + len(batch.labels)))
        start += len(batch.labels)
    images = torch.cat([batch.images for _, batch in present])
    labels = torch.cat([batch.labels for _, batch in present])
    return MixedBatch(images, labels, segments)


def read_batches(sources: dict[str, BatchSource]) -> dict[str, StreamBatch | None]:
    """One batch (or None, the stream's skip policy) from every source, in order."""
    return {stream: source.next_batch() for stream, source in sources.items()}


def train_step(
    engine,
    objective: Objective,
    sources: dict[str, BatchSource],
    weights: dict[str, float],
    step: int,
    rank: int,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> StepReport:
    """Read, forward, backward and update once; ``step`` is the number of this step (1-based).

    Args:
        engine: the DeepSpeed engine wrapping the classifier.
        objective: turns the mixed batch's logits into the loss.
        sources: the streams read this step (batch size > 0), in config order.
        weights: each stream's loss weight.
        memory_format: channels_last on CUDA.
    Returns:
        this rank's report of the step.
    """
    started = time.perf_counter()
    mixed = mix_batches(read_batches(sources), weights)
    data_wait_s = time.perf_counter() - started
    parameter = next(engine.module.parameters())
    if mixed is None:
        # Every stream skipped on this rank, but the others still all-reduce gradients:
        # contribute zeros so the collectives stay matched.
        loss = sum(p.sum() for p in engine.module.parameters()) * 0.0
        stream_losses, extra, samples = {}, {}, {}
    else:
        images = mixed.images.to(parameter.device, parameter.dtype, non_blocking=True)
        images = images.contiguous(memory_format=memory_format)
        labels = mixed.labels.to(parameter.device, non_blocking=True)
        output = objective(engine(images), labels, mixed.segments, step)
        loss, stream_losses, extra = output.loss, output.stream_losses, output.extra
        samples = {segment.stream: segment.stop - segment.start for segment in mixed.segments}
    engine.backward(loss)
    engine.step()
    return StepReport(
        step=step,
        rank=rank,
        samples=samples,
        stream_losses=stream_losses,
        loss=loss.item(),
        step_s=time.perf_counter() - started,
        data_wait_s=data_wait_s,
        lr=engine.get_lr()[0],
        stats={stream: copy.copy(source.stats) for stream, source in sources.items()},
        extra=extra,
    )
