"""Objectives: Eq. 1 by hand, the IRMv1 penalty, the registry."""

import math

import pytest
import torch

from trainers.config import ObjectiveConfig
from trainers.objectives import (
    CrossEntropyMix,
    InvariantRiskMinimisation,
    Segment,
    build_objective,
    irm_penalty,
)


def hand_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """-mean log softmax(logits)[label], written out."""
    total = 0.0
    for row, label in zip(logits.tolist(), labels.tolist()):
        total += math.log(sum(math.exp(value) for value in row)) - row[label]
    return total / len(labels)


def test_cross_entropy_mix_is_eq1_by_hand():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(9, 4, generator=generator)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 1])
    segments = [Segment("original", 1.0, 0, 5), Segment("interventional", 0.05, 5, 7), Segment("transferred", 2.0, 7, 9)]
    output = CrossEntropyMix()(logits, labels, segments, step=1)
    parts = [hand_cross_entropy(logits[a:b], labels[a:b]) for a, b in [(0, 5), (5, 7), (7, 9)]]
    assert output.loss.item() == pytest.approx(1.0 * parts[0] + 0.05 * parts[1] + 2.0 * parts[2], rel=1e-6)
    assert output.stream_losses == pytest.approx(dict(zip(["original", "interventional", "transferred"], parts)), rel=1e-6)


def optimal_scale(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """argmin over s of CE(s * logits) by bisection on its derivative (the risk is convex in s)."""
    low, high = 1e-3, 100.0
    for _ in range(100):
        middle = (low + high) / 2
        scale = torch.tensor(middle, requires_grad=True)
        (gradient,) = torch.autograd.grad(torch.nn.functional.cross_entropy(logits * scale, labels), [scale])
        low, high = (middle, high) if gradient < 0 else (low, middle)
    return (low + high) / 2


def environment(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits that are informative but not perfectly separating, so the optimal scale is finite."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(3, (64,), generator=generator)
    logits = torch.nn.functional.one_hot(labels, 3).float() + torch.randn(64, 3, generator=generator)
    return logits, labels


def test_irm_penalty_is_zero_when_optimal_scales_agree_and_positive_otherwise():
    (logits_a, labels_a), (logits_b, labels_b) = environment(1), environment(2)
    # Rescale each environment so that scale 1 is its optimum: both agree.
    logits_a = logits_a * optimal_scale(logits_a, labels_a)
    logits_b = logits_b * optimal_scale(logits_b, labels_b)
    assert irm_penalty(logits_a, labels_a).item() == pytest.approx(0.0, abs=1e-8)
    assert irm_penalty(logits_b, labels_b).item() == pytest.approx(0.0, abs=1e-8)
    # Environment b now wants a different scale than a does.
    assert irm_penalty(logits_b * 3.0, labels_b).item() > 1e-3
    assert irm_penalty(logits_b * 0.3, labels_b).item() > 1e-3


def test_irm_objective_adds_the_summed_penalty_with_annealing():
    (logits_a, labels_a), (logits_b, labels_b) = environment(1), environment(2)
    logits = torch.cat([logits_a, 2.0 * logits_b]).requires_grad_()
    labels = torch.cat([labels_a, labels_b])
    segments = [Segment("red", 1.0, 0, 64), Segment("green", 1.0, 64, 128)]
    erm = CrossEntropyMix()(logits, labels, segments, step=1).loss.item()
    penalty = irm_penalty(logits_a, labels_a).item() + irm_penalty(2.0 * logits_b, labels_b).item()
    assert penalty > 0
    objective = InvariantRiskMinimisation(weight=100.0, anneal_steps=10)
    during = objective(logits, labels, segments, step=10)
    after = objective(logits, labels, segments, step=11)
    assert during.loss.item() == pytest.approx(erm + penalty, rel=1e-5)
    assert after.loss.item() == pytest.approx((erm + 100.0 * penalty) / 100.0, rel=1e-5)
    # The penalty is differentiable: its gradient reaches the logits.
    after.loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_objectives_are_chosen_by_name():
    assert isinstance(build_objective(ObjectiveConfig()), CrossEntropyMix)
    irm = build_objective(ObjectiveConfig(name="irm", irm_weight=5.0, irm_anneal_steps=3))
    assert isinstance(irm, InvariantRiskMinimisation) and (irm.weight, irm.anneal_steps) == (5.0, 3)
