"""Training objectives over one mixed batch, chosen by name in config (``train.objective.name``).

An objective sees the logits of the whole concatenated batch, the labels, and one ``Segment``
per stream that is present this step; it returns the total loss and each stream's mean
cross-entropy (for metrics). Streams are environments for objectives that need them (IRM).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from trainers.causal_models import CausalModel, causal_model
from trainers.config import ObjectiveConfig
from trainers.errors import TrainError
from trainers.interventions import Alignment, aligned_module, intervening, recorded
from trainers.site_heads import site_heads


@dataclass(frozen=True)
class Segment:
    """The rows ``start:stop`` of the mixed batch that came from ``stream``, weighted by ``weight``."""

    stream: str
    weight: float
    start: int
    stop: int
    paired: bool = False  # the first half of the rows are samples, the second half their counterfactual partners, in order


@dataclass
class ObjectiveOutput:
    """The loss to backpropagate, the detached per-stream mean cross-entropies and any extra
    figures, all left on the device (0-d tensors; a plain float where it is known on the host):
    reading them here would make the host wait for the device every step."""

    loss: torch.Tensor
    stream_losses: dict[str, torch.Tensor]
    extra: dict[str, torch.Tensor | float]


class Objective(Protocol):
    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, segments: list[Segment], step: int) -> ObjectiveOutput: ...


@runtime_checkable
class NetworkObjective(Protocol):
    """An objective that runs the network itself (more than one forward, or hooks inside it): the
    step hands it the network (the DeepSpeed engine) and the batch instead of the logits."""

    def run(self, network, images: torch.Tensor, values: torch.Tensor | None, labels: torch.Tensor, segments: list[Segment],
            step: int) -> ObjectiveOutput: ...


def stream_cross_entropies(logits: torch.Tensor, labels: torch.Tensor, segments: list[Segment]) -> list[torch.Tensor]:
    """Each segment's mean cross-entropy, in segment order (float32 even for bf16 logits)."""
    return [F.cross_entropy(logits[s.start : s.stop].float(), labels[s.start : s.stop]) for s in segments]


class CrossEntropyMix:
    """Eq. 1: the sum over streams of weight x that stream's mean cross-entropy."""

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, segments: list[Segment], step: int) -> ObjectiveOutput:
        losses = stream_cross_entropies(logits, labels, segments)
        total = sum(s.weight * loss for s, loss in zip(segments, losses))
        return ObjectiveOutput(total, {s.stream: loss.detach() for s, loss in zip(segments, losses)}, {})


def irm_penalty(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """IRMv1 penalty of one environment: the squared gradient of its risk w.r.t. a dummy scale 1.0.

    It is zero exactly when scaling the logits cannot lower this environment's risk, i.e. when
    the classifier is already optimal for it at scale 1.
    """
    scale = torch.ones((), device=logits.device, requires_grad=True)
    risk = F.cross_entropy(logits.float() * scale, labels)
    # create_graph: the penalty itself is differentiated by the backward pass.
    (gradient,) = torch.autograd.grad(risk, [scale], create_graph=True)
    return gradient.pow(2)


class InvariantRiskMinimisation:
    """Eq. 1 plus the IRMv1 penalty summed over environments (streams).

    As in the IRM reference code, the penalty weight is 1 for the first ``anneal_steps`` steps,
    then ``weight``; when it exceeds 1 the whole loss is divided by it so the gradient scale
    (and the learning rate that suits it) does not jump at the switch.
    """

    def __init__(self, weight: float, anneal_steps: int) -> None:
        self.weight = weight
        self.anneal_steps = anneal_steps

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, segments: list[Segment], step: int) -> ObjectiveOutput:
        mix = CrossEntropyMix()(logits, labels, segments, step)
        penalty = sum(irm_penalty(logits[s.start : s.stop], labels[s.start : s.stop]) for s in segments)
        penalty_weight = self.weight if step > self.anneal_steps else 1.0  # steps count from 1
        loss = mix.loss + penalty_weight * penalty
        if penalty_weight > 1.0:
            loss = loss / penalty_weight
        return ObjectiveOutput(loss, mix.stream_losses, {"irm_penalty": penalty.detach(), "irm_penalty_weight": penalty_weight})


class InterchangeIntervention:
    """Seed 003's IIT: Eq. 1 plus ``weight`` x the cross entropy of an intervened forward against the
    causal model's counterfactual label.

    Each row (base) is paired with another row of the batch (source) by a permutation seeded by the
    step (a resumed run pairs as the uninterrupted one), and a variable is drawn per pair; typed
    interchanges also draw the source's variable (the seed's Eqn. 7), untyped ones read the same.
    The source's aligned values come from the behavioural forward itself (gradients reach the
    network through both runs, as in the seed's Fig. 2). The intervened forward also updates
    BatchNorm's running statistics once more; with ``weight`` 0 it is not run.

    ``multitask_weight`` > 0 adds the seed's multi-task loss (Eq. 8): the sum over sites of the cross
    entropy of the site's head (``trainers.site_heads``) on the behavioural forward's aligned values
    against the site's variable.
    """

    def __init__(self, causal: CausalModel, alignment: Alignment, typed: bool, weight: float, multitask_weight: float = 0.0) -> None:
        self.causal, self.alignment, self.typed, self.weight = causal, alignment, typed, weight
        self.multitask_weight = multitask_weight

    def pairing(self, count: int, step: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Source rows, base variables and source variables of the step's pairs: drawn on the host and copied
        to the device, so nothing waits for a device-to-host read."""
        generator = torch.Generator().manual_seed(step)
        variables = len(self.causal.variables)
        source = torch.randperm(count, generator=generator)
        base_variables = torch.randint(variables, (count,), generator=generator)
        source_variables = torch.randint(variables, (count,), generator=generator) if self.typed else base_variables
        return tuple(t.to(device, non_blocking=True) for t in (source, base_variables, source_variables))

    def run(self, network, images: torch.Tensor, values: torch.Tensor | None, labels: torch.Tensor, segments: list[Segment],
            step: int) -> ObjectiveOutput:
        """The loss of one mixed batch; ``network`` is the DeepSpeed engine (or any module) that is called."""
        if values is None:
            raise TrainError("train.objective.name interchange_intervention needs every sample's causal variables, "
                             "and a stream of this batch gave none")
        model = getattr(network, "module", network)  # the engine wraps the classifier
        target = aligned_module(model, self.alignment)
        with recorded(target) as seen:
            logits = network(images)
        behaviour = CrossEntropyMix()(logits, labels, segments, step)
        loss, extra = behaviour.loss, {}
        if self.weight > 0:
            source, base_variables, source_variables = self.pairing(len(labels), step, images.device)
            with intervening(target, self.alignment, seen[0][source], base_variables, source_variables):
                intervened = network(images)
            counterfactual = self.causal.counterfactual(values, values[source], base_variables, source_variables)
            iit = F.cross_entropy(intervened.float(), counterfactual)
            loss, extra["iit_loss"] = loss + self.weight * iit, iit.detach()
        if self.multitask_weight > 0:
            sites = site_heads(model, self.alignment)(seen[0], self.alignment.indices(seen[0].shape[1:]))
            multitask = sum(F.cross_entropy(site.float(), values[:, index]) for index, site in enumerate(sites))
            loss, extra["multitask_loss"] = loss + self.multitask_weight * multitask, multitask.detach()
        return ObjectiveOutput(loss, behaviour.stream_losses, extra)


def pair_rows(segments: list[Segment], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The paired segments' rows laid end to end: each row's position and its partner's, both directions (a
    sample and then its partner each take the other as counterfactual), in segment order. Built on the host from
    the segments and copied to the device, so nothing waits for a device-to-host read."""
    rows, partners, start = [], [], 0
    for segment in segments:
        half = (segment.stop - segment.start) // 2
        samples, counterparts = torch.arange(start, start + half), torch.arange(start + half, start + 2 * half)
        rows += [samples, counterparts]
        partners += [counterparts, samples]
        start += 2 * half
    return torch.cat(rows).to(device, non_blocking=True), torch.cat(partners).to(device, non_blocking=True)


def gradient_supervision_loss(module: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor,
                              partners: torch.Tensor) -> torch.Tensor:
    """Seed 002's Eq. 1 for each (row, partner) pair: 1 - cos(g, x_partner - x_row), g the gradient at x_row of
    the logit of the partner's class.

    The gradient is taken of the sum of the chosen logits: each row's share is its own logit's gradient, except
    for what BatchNorm's batch statistics couple across rows in training mode. ``create_graph``: the cosine is
    differentiated again by the backward pass (the seed's two extra backpropagations).
    """
    images = images.detach().requires_grad_(True)
    logits = module(images)
    chosen = logits[rows, labels[partners]].float()
    (gradient,) = torch.autograd.grad(chosen.sum(), [images], create_graph=True)
    direction = (images[partners] - images[rows]).detach()
    return 1.0 - F.cosine_similarity(gradient[rows].flatten(1).float(), direction.flatten(1).float(), dim=1)


class GradientSupervision:
    """Seed 002: Eq. 1 over every row (samples and their partners, the partners also as augmentation) plus
    ``weight`` x the mean gradient-supervision loss over the pairs of the paired streams, in both directions.
    Reports each paired stream's mean L_GS as ``gs_loss/<stream>``.

    The input gradient comes from a second forward of the paired rows through the bare classifier, not the
    DeepSpeed engine: the engine hooks its outputs to start its backward bookkeeping (ZeRO 0 refuses any
    backward through them but ``engine.backward``), and ``autograd.grad`` through them would set it off early.
    The engine's own forward gives Eq. 1, so ``engine.backward`` runs as in every other step. BatchNorm's
    running statistics see the paired rows twice.
    """

    def __init__(self, weight: float) -> None:
        self.weight = weight

    def run(self, network, images: torch.Tensor, values: torch.Tensor | None, labels: torch.Tensor, segments: list[Segment],
            step: int) -> ObjectiveOutput:
        """The loss of one mixed batch; ``network`` is the DeepSpeed engine (or any module) that is called."""
        mix = CrossEntropyMix()(network(images), labels, segments, step)
        paired = [segment for segment in segments if segment.paired]
        if not paired:  # the paired streams skipped this step (when_short: skip); the config ensures there is one
            return mix
        rows, partners = pair_rows(paired, images.device)
        per_pair = gradient_supervision_loss(getattr(network, "module", network), torch.cat([images[s.start : s.stop] for s in paired]),
                                             torch.cat([labels[s.start : s.stop] for s in paired]), rows, partners)
        extra, start = {}, 0
        for segment in paired:  # pair_rows lays the pairs out segment after segment
            count = segment.stop - segment.start
            extra[f"gs_loss/{segment.stream}"] = per_pair[start : start + count].mean().detach()
            start += count
        return ObjectiveOutput(mix.loss + self.weight * per_pair.mean(), mix.stream_losses, extra)


OBJECTIVES: dict[str, Callable[[ObjectiveConfig], Objective | NetworkObjective]] = {
    "cross_entropy_mix": lambda config: CrossEntropyMix(),
    "irm": lambda config: InvariantRiskMinimisation(config.irm_weight, config.irm_anneal_steps),
    "interchange_intervention": lambda config: InterchangeIntervention(causal_model(config.causal_model), config.alignment,
                                                                       config.typed, config.iit_weight, config.multitask_weight),
    "gradient_supervision": lambda config: GradientSupervision(config.gs_lambda),
}


def build_objective(config: ObjectiveConfig) -> Objective | NetworkObjective:
    """The objective named by ``config.name`` (one of ``OBJECTIVES``)."""
    return OBJECTIVES[config.name](config)
