"""One mixed training step: a batch from every stream, one forward, the objective, one update.

In the training loop the step never waits for the device: its losses stay there as 0-d tensors in
the ``StepReport`` until ``read_back`` fetches a whole report interval's at once
(``train.report_every_steps``).
"""

import copy
import time
from dataclasses import dataclass

import torch

from trainers.batches import BatchSource, StreamBatch
from trainers.callbacks import StepReport
from trainers.objectives import NetworkObjective, Objective, Segment


@dataclass
class MixedBatch:
    """The streams' batches concatenated in config order, and which rows came from which stream."""

    images: torch.Tensor
    labels: torch.Tensor
    segments: list[Segment]
    values: torch.Tensor | None = None  # the causal variables, where every stream gave them


def mix_batches(batches: dict[str, StreamBatch | None], weights: dict[str, float]) -> MixedBatch | None:
    """Concatenate the streams' batches (None: the stream skips this step), a paired stream's samples followed
    by their partners in one segment. None if all skipped."""
    present = [(stream, batch) for stream, batch in batches.items() if batch is not None]
    if not present:
        return None
    segments, start, rows = [], 0, [batch.rows for _, batch in present]
    for (stream, batch), (_, labels) in zip(present, rows):
        segments.append(Segment(stream, weights[stream], start, start + len(labels), paired=batch.partner_images is not None))
        start += len(labels)
    images = torch.cat([images for images, _ in rows])
    labels = torch.cat([labels for _, labels in rows])
    # A paired stream's partners have no causal variables of their own: its batch gives none.
    given = [batch.values for _, batch in present if batch.values is not None and batch.partner_images is None]
    values = torch.cat(given) if len(given) == len(present) else None
    return MixedBatch(images, labels, segments, values)


def read_batches(sources: dict[str, BatchSource]) -> dict[str, StreamBatch | None]:
    """One batch (or None, the stream's skip policy) from every source, in order."""
    return {stream: source.next_batch() for stream, source in sources.items()}


def train_step(
    engine,
    objective: Objective | NetworkObjective,
    sources: dict[str, BatchSource],
    weights: dict[str, float],
    step: int,
    rank: int,
    memory_format: torch.memory_format = torch.contiguous_format,
    sync: bool = True,
) -> StepReport:
    """Read, forward, backward and update once; ``step`` is the number of this step (1-based).

    Args:
        engine: the DeepSpeed engine wrapping the classifier.
        objective: turns the mixed batch's logits into the loss (a NetworkObjective: runs the engine on the batch itself).
        sources: the streams read this step (batch size > 0), in config order.
        weights: each stream's loss weight.
        memory_format: channels_last on CUDA.
        sync: read the losses back now (a host-device sync). The loop passes False and reads a
            report interval's losses at once (``read_back``).
    Returns:
        this rank's report of the step; with ``sync=False`` its losses are still on the device.
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
        labels = mixed.labels
        if labels.device != parameter.device and parameter.device.type == "cuda":
            # From pageable memory a copy to the GPU may wait for the stream; from pinned memory it does not.
            labels = labels.pin_memory()
        labels = labels.to(parameter.device, non_blocking=True)
        if isinstance(objective, NetworkObjective):  # e.g. interchange interventions: two forwards, one hooked
            values = None if mixed.values is None else mixed.values.to(parameter.device, non_blocking=True)
            output = objective.run(engine, images, values, labels, mixed.segments, step)
        else:
            output = objective(engine(images), labels, mixed.segments, step)
        loss, stream_losses, extra = output.loss, output.stream_losses, output.extra
        samples = {segment.stream: segment.stop - segment.start for segment in mixed.segments}
    engine.backward(loss)
    engine.step()
    report = StepReport(
        step=step,
        rank=rank,
        samples=samples,
        stream_losses=stream_losses,
        loss=loss.detach(),
        # Host time: on CUDA the host runs ahead of the device between report steps, so a
        # report interval's mean is the device's step time.
        step_s=time.perf_counter() - started,
        data_wait_s=data_wait_s,
        lr=engine.get_lr()[0],
        stats={stream: copy.copy(source.stats) for stream, source in sources.items()},
        extra=extra,
    )
    if sync:
        read_back([report])
    return report


def read_back(reports: list[StepReport]) -> None:
    """Replace the device tensors among ``reports``' losses and extra figures by floats, in place.

    A host-device sync: the host waits for the device to finish these steps. One copy for all the
    reports, so the loop pays it once per report interval, not once per step.
    """
    fields = []
    for report in reports:
        fields += [(vars(report), "loss")] + [(report.stream_losses, name) for name in report.stream_losses]
        fields += [(report.extra, name) for name in report.extra]
    on_device = [(values, name) for values, name in fields if isinstance(values[name], torch.Tensor)]
    if not on_device:
        return
    floats = torch.stack([values[name].float() for values, name in on_device]).tolist()  # the sync
    for (values, name), value in zip(on_device, floats):
        values[name] = value
