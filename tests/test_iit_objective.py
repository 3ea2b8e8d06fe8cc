"""train.objective.name interchange_intervention under DeepSpeed on CPU: the first step's IIT loss is
the cross entropy of the hand-built intervened forward against the counterfactual labels, and a
short run lowers the IIT loss on a toy pointer-value task; the multi-task heads (seed 003's Eq. 8) train
with the network and are left out of the classifier a checkpoint loads as."""

import copy

import pytest
import torch
import torch.nn.functional as F

from trainers import checkpoint
from trainers.causal_models import causal_model
from trainers.config import TrainConfig
from trainers.engine import build_engine, local_process_group
from trainers.errors import TrainError
from trainers.interventions import capture, interchange_forward
from trainers.models import load_classifier
from trainers.memory_source import MemorySource
from trainers.objectives import InterchangeIntervention, build_objective
from trainers.step import train_step

BATCH, STEPS = 32, 40
PVR = causal_model("pointer_value")


def toy_grids(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """8 px pointer-value grids whose 4 px cells show their digit as a grey level (plus noise): images, labels, digits."""
    generator = torch.Generator().manual_seed(seed)
    digits = torch.randint(10, (count, 4), generator=generator)
    cells = F.interpolate((digits.float() / 9).view(count, 1, 2, 2), scale_factor=4, mode="nearest")
    images = cells.expand(-1, 3, -1, -1) + 0.1 * torch.randn(count, 3, 8, 8, generator=generator)
    return images, PVR.output(digits), digits


def iit_config(**objective) -> TrainConfig:
    return TrainConfig.model_validate({
        "model": "small_cnn", "num_classes": 10, "max_steps": STEPS, "checkpoint_every_steps": 1000, "report_every_steps": 1,
        "optimizer": {"name": "adamw", "lr": 0.02, "weight_decay": 0.0},
        "streams": {"original": {"batch_size": BATCH}},
        # small_cnn's first max-pool: (32, 4, 4) on 8 px, each 2x2 quadrant above its cell
        "objective": {"name": "interchange_intervention", "alignment_module": "features.1", **objective},
    })


@pytest.fixture(scope="module")
def process_group():
    with local_process_group():
        yield


def iit_loss(network, config: TrainConfig, images, digits) -> float:
    """The IIT loss of the network in eval mode on fixed typed interchanges (row r takes from row r + 1)."""
    generator = torch.Generator().manual_seed(7)
    rows = torch.roll(torch.arange(len(digits)), 1)
    to, read = torch.randint(4, (len(digits),), generator=generator), torch.randint(4, (len(digits),), generator=generator)
    with torch.no_grad():
        logits = interchange_forward(network.eval(), config.objective.alignment, images, images[rows], to, read)
    network.train()
    return F.cross_entropy(logits, PVR.counterfactual(digits, digits[rows], to, read)).item()


def test_the_iit_step_is_the_hand_built_intervened_loss_and_training_lowers_it(process_group):
    config = iit_config()
    torch.manual_seed(0)
    engine = build_engine(config, torch.device("cpu"))
    objective = build_objective(config.objective)
    assert isinstance(objective, InterchangeIntervention) and objective.typed
    images, labels, digits = toy_grids(512, seed=0)
    held_images, _, held_digits = toy_grids(256, seed=1)
    source = MemorySource("original", images, labels, BATCH, seed=1, values=digits)
    first = copy.deepcopy(source).next_batch()
    before = copy.deepcopy(engine.module).train()
    loss_before = iit_loss(copy.deepcopy(before), config, held_images, held_digits)

    reports = [train_step(engine, objective, {"original": source}, {"original": 1.0}, step=step, rank=0) for step in range(1, STEPS + 1)]

    rows, base_variables, source_variables = objective.pairing(BATCH, 1, torch.device("cpu"))
    assert not torch.equal(base_variables, source_variables)  # typed: some pairs swap across positions
    intervened = interchange_forward(before, config.objective.alignment, first.images, first.images[rows], base_variables,
                                     source_variables)
    counterfactual = PVR.counterfactual(first.values, first.values[rows], base_variables, source_variables)
    assert reports[0].extra["iit_loss"] == pytest.approx(F.cross_entropy(intervened, counterfactual).item(), rel=1e-4)
    loss_after = iit_loss(engine.module, config, held_images, held_digits)
    assert loss_after < 0.8 * loss_before, (loss_before, loss_after)


def test_a_batch_without_causal_variables_is_a_one_line_error(process_group):
    config = iit_config(typed=False)
    engine = build_engine(config, torch.device("cpu"))
    images, labels, _ = toy_grids(BATCH, seed=0)
    with pytest.raises(TrainError, match="interchange_intervention needs every sample's causal variables"):
        train_step(engine, build_objective(config.objective), {"original": MemorySource("original", images, labels, BATCH)},
                   {"original": 1.0}, step=1, rank=0)


def test_multitask_heads_train_with_the_network_and_stay_out_of_the_evaluated_classifier(process_group, tmp_path):
    # iit_weight 0: the seed's multi-task arm alone (no intervened forward); the heads read the 8 px grids' quadrants
    config = TrainConfig.model_validate(iit_config(iit_weight=0.0, multitask_weight=1.0).model_dump()
                                        | {"data": {"crop_size": 8, "resize_size": 8}})
    torch.manual_seed(0)
    engine = build_engine(config, torch.device("cpu"))
    heads = engine.module.objective_heads
    assert [(head.in_features, head.out_features) for head in heads.heads] == [(32 * 2 * 2, 10)] * 4
    images, labels, digits = toy_grids(512, seed=0)
    source = MemorySource("original", images, labels, BATCH, seed=1, values=digits)
    first = copy.deepcopy(source).next_batch()
    before = copy.deepcopy(engine.module).train()
    objective = build_objective(config.objective)

    reports = [train_step(engine, objective, {"original": source}, {"original": 1.0}, step=step, rank=0) for step in range(1, STEPS + 1)]

    _, aligned = capture(before, config.objective.alignment, first.images)
    expected = sum(F.cross_entropy(logits, first.values[:, site])
                   for site, logits in enumerate(before.objective_heads(aligned, config.objective.alignment.indices(aligned.shape[1:]))))
    assert "iit_loss" not in reports[0].extra
    assert reports[0].extra["multitask_loss"] == pytest.approx(expected.item(), rel=1e-4)
    assert reports[-1].extra["multitask_loss"] < 0.5 * reports[0].extra["multitask_loss"]
    assert not torch.equal(heads.heads[0].weight, before.objective_heads.heads[0].weight)  # the engine's optimiser trains them

    checkpoint.save(engine, tmp_path / "checkpoints", STEPS, {"original": source}, keep=1)
    classifier = load_classifier(tmp_path / "checkpoints", "small_cnn", 10)
    assert not hasattr(classifier, "objective_heads")
    with torch.no_grad():
        assert torch.allclose(classifier(first.images), engine.module.eval()(first.images), atol=1e-5)


def test_multitask_weight_needs_the_interchange_objective():
    with pytest.raises(ValueError, match="multitask_weight 1.0 needs name interchange_intervention"):
        TrainConfig.model_validate({"model": "small_cnn", "streams": {"original": {"batch_size": 4}},
                                    "objective": {"name": "irm", "multitask_weight": 1.0}})
