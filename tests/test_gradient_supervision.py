"""train.objective.name gradient_supervision (seed 002): L_GS by hand on a linear model, where the input
gradient of a class's logit is that class's weight row; a short DeepSpeed run on CPU (ZeRO 0 and 1) lowering
L_GS on a toy task whose counterfactual direction is known; the one-line errors."""

import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from trainers.config import TrainConfig
from trainers.engine import build_engine, local_process_group
from trainers.errors import TrainError
from trainers.memory_source import MemorySource
from trainers.objectives import GradientSupervision, Segment, build_objective
from trainers.step import mix_batches, train_step

STEPS, BATCH = 20, 16


def hand_cosine_distance(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return 1.0 - dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_gs_loss_is_one_minus_the_cosine_of_weight_row_and_pair_direction_on_a_linear_model():
    torch.manual_seed(0)
    network = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    images = torch.randn(8, 3, 2, 2)
    # rows 0-1 samples of "pairs" and 2-3 their partners; 4-5 an unpaired stream; 6 a sample of "more", 7 its partner
    labels = torch.tensor([2, 3, 1, 0, 0, 1, 3, 2])
    segments = [Segment("pairs", 0.5, 0, 4, paired=True), Segment("original", 1.0, 4, 6), Segment("more", 2.0, 6, 8, paired=True)]
    output = GradientSupervision(weight=3.0).run(network, images, None, labels, segments, step=1)

    weights, flat = network[1].weight.detach(), images.flatten(1)
    hand = {pair: hand_cosine_distance(weights[labels[pair[1]]].tolist(), (flat[pair[1]] - flat[pair[0]]).tolist())
            for pair in [(0, 2), (1, 3), (2, 0), (3, 1), (6, 7), (7, 6)]}  # both directions
    pairs_gs = sum(hand[pair] for pair in [(0, 2), (1, 3), (2, 0), (3, 1)]) / 4
    assert output.extra["gs_loss/pairs"].item() == pytest.approx(pairs_gs, rel=1e-5)
    assert output.extra["gs_loss/more"].item() == pytest.approx((hand[(6, 7)] + hand[(7, 6)]) / 2, rel=1e-5)
    logits = network(images).detach()
    cross_entropy = nn.functional.cross_entropy
    eq1 = 0.5 * cross_entropy(logits[:4], labels[:4]) + cross_entropy(logits[4:6], labels[4:6]) + 2.0 * cross_entropy(logits[6:], labels[6:])
    assert output.loss.item() == pytest.approx(eq1.item() + 3.0 * sum(hand.values()) / 6, rel=1e-5)
    assert set(output.extra) == {"gs_loss/pairs", "gs_loss/more"}


def test_mixing_lays_a_paired_batch_out_as_samples_then_partners():
    source = MemorySource("pairs", torch.arange(4.0).view(4, 1, 1, 1), torch.tensor([0, 1, 0, 1]), 2,
                          partners=(10 + torch.arange(4.0).view(4, 1, 1, 1), torch.tensor([1, 0, 1, 0])))
    plain = MemorySource("original", torch.zeros(3, 1, 1, 1), torch.zeros(3, dtype=torch.int64), 3)
    batch = source.next_batch()
    mixed = mix_batches({"original": plain.next_batch(), "pairs": batch}, {"original": 1.0, "pairs": 1.0})
    assert mixed.segments[1] == Segment("pairs", 1.0, 3, 7, paired=True)
    assert torch.equal(mixed.images[5:7], batch.images + 10) and torch.equal(mixed.labels[5:7], 1 - batch.labels)


def toy_pairs(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Two classes told apart by the sign of a fixed pattern on top of noise; a sample's partner has the same
    noise and the other sign, so x_j - x_i is +-2 x the pattern: the direction that makes the difference."""
    generator = torch.Generator().manual_seed(seed)
    pattern = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(99))
    labels = torch.randint(2, (count,), generator=generator)
    noise = torch.randn(count, 3, 8, 8, generator=generator)
    signs = (2 * labels - 1).float().view(-1, 1, 1, 1)
    return noise + 0.3 * signs * pattern, labels, (noise - 0.3 * signs * pattern, 1 - labels)


def gs_config(zero_stage: int) -> TrainConfig:
    return TrainConfig.model_validate({
        "model": "small_cnn", "num_classes": 2, "max_steps": STEPS, "checkpoint_every_steps": 1000, "zero_stage": zero_stage,
        "optimizer": {"name": "adamw", "lr": 0.01, "weight_decay": 0.0},
        "streams": {"pairs": {"batch_size": BATCH, "pairs": True}},
        "objective": {"name": "gradient_supervision", "gs_lambda": 1.0},
    })


@pytest.fixture(scope="module")
def process_group():
    with local_process_group():
        yield


@pytest.mark.parametrize("zero_stage", [0, 1])
def test_gs_under_deepspeed_lowers_the_gs_loss_on_a_toy_with_a_known_direction(process_group, zero_stage):
    config = gs_config(zero_stage)
    engine = build_engine(config, torch.device("cpu"))
    images, labels, partners = toy_pairs(256, seed=0)
    source = MemorySource("pairs", images, labels, BATCH, seed=1, partners=partners)
    objective = build_objective(config.objective)
    reports = [train_step(engine, objective, {"pairs": source}, {"pairs": 1.0}, step=step, rank=0) for step in range(1, STEPS + 1)]
    gs = [report.extra["gs_loss/pairs"] for report in reports]
    assert reports[0].samples == {"pairs": 2 * BATCH} and all(math.isfinite(value) for value in gs)
    first, last = sum(gs[:3]) / 3, sum(gs[-3:]) / 3
    assert last < 0.7 * first, (first, last)


def test_a_pairs_objective_without_a_paired_stream_is_a_one_line_config_error():
    with pytest.raises(ValidationError, match=r"objective.name gradient_supervision needs counterfactual pairs: set pairs: true "
                                              r"on a stream of train.streams \(original\)"):
        TrainConfig.model_validate({"streams": {"original": {"batch_size": 4}, "spare": {"batch_size": 0, "pairs": True}},
                                    "objective": {"name": "gradient_supervision"}})


def test_a_partner_of_its_own_class_is_a_one_line_error():
    images, labels, (partner_images, partner_labels) = toy_pairs(8, seed=0)
    partner_labels[5] = labels[5]
    with pytest.raises(TrainError, match=f"stream pairs: sample 5's counterfactual partner has its own class {labels[5].item()} "
                                         r"\(1 such pairs\); a pair's classes must differ"):
        MemorySource("pairs", images, labels, 4, partners=(partner_images, partner_labels))
