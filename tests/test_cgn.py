"""The CGN generator: the composer's algebra, its losses against hand values, counterfactual latents,
save/load of its weights, and counterfactual work units (deterministic, resumable, recorded)."""

import hashlib
import json
import math
import multiprocessing
import os
import tarfile
import time
from pathlib import Path

import pytest
import torch

from cluster.config import load_config
from cluster.errors import ConfigError
from datagen.errors import DatagenError
from datagen.generators.cgn import (
    CgnGenerator,
    CounterfactualNetwork,
    compose,
    load_cgn,
    shift_cyclically,
)
from datagen.generators.cgn_config import CgnArchitecture
from datagen.generators.cgn_losses import (
    binary_entropy_loss,
    edge_loss,
    edge_mass,
    lsgan_loss,
    mask_size_loss,
)
from datagen.generators.cvae import ConditionalVae, CvaeGenerator
from datagen.generators.cvae_config import CvaeArchitecture
from datagen.generators.loading import load_generator
from datagen.generators.saved import WEIGHTS_NAME
from datagen.produce import UnitProducer
from datagen.strategy_config import StrategyConfig
from datagen.unit_writer import UnitWriter
from datagen.units import WorkUnit
from shards.manifest import Manifest
from tests import bad_input_helpers
from tests.datagen_helpers import tiny_store

TINY = CgnArchitecture(num_classes=3, image_size=8, noise_dim=4, label_embedding_dim=3, width=4)
UNIT = WorkUnit(class_index=1, seed_start=0, seed_stop=4)
COUNTERFACTUAL = StrategyConfig(kind="counterfactual", truncation=1.0, seeds_per_class=4, counterfactuals_per_shape=5)


def tiny_cgn(seed: int = 0) -> CgnGenerator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CgnGenerator(CounterfactualNetwork(TINY))


def one_line_error(call) -> str:
    return bad_input_helpers.one_line_error(call, DatagenError)


def test_composer_takes_the_foreground_under_a_full_mask_and_the_background_under_an_empty_one():
    foreground, background = torch.rand(2, 3, 5, 5), torch.rand(2, 3, 5, 5)
    assert torch.equal(compose(torch.ones(2, 1, 5, 5), foreground, background), foreground)
    assert torch.equal(compose(torch.zeros(2, 1, 5, 5), foreground, background), background)
    half = compose(torch.full((2, 1, 5, 5), 0.5), foreground, background)
    torch.testing.assert_close(half, (foreground + background) / 2)
    # A mask of one pixel pastes exactly that pixel of the foreground.
    mask = torch.zeros(2, 1, 5, 5)
    mask[:, :, 2, 3] = 1
    composite = compose(mask, foreground, background)
    assert torch.equal(composite[:, :, 2, 3], foreground[:, :, 2, 3])
    assert torch.equal(composite[:, :, 0, 0], background[:, :, 0, 0])


def test_texture_shift_is_a_cyclic_roll_per_image():
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    shifted = shift_cyclically(images, torch.tensor([[0.25, 0.5], [0.0, 0.0]]))
    assert torch.equal(shifted[0], torch.roll(images[0], shifts=(-1, -2), dims=(1, 2)))
    assert torch.equal(shifted[1], images[1])


def test_mask_losses_against_hand_values():
    # Binary entropy: ln 2 at m = 0.5, near 0 at m in {0, 1}.
    assert binary_entropy_loss(torch.full((2, 1, 4, 4), 0.5)).item() == pytest.approx(math.log(2))
    assert binary_entropy_loss(torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)).item() < 2e-3
    # Mask size: the hinge beyond tau +- tolerance; mean 0.6 vs tau 0.3, tolerance 0.1 -> 0.2; mean 0.35 -> 0.
    assert mask_size_loss(torch.full((1, 1, 4, 4), 0.6), 0.3, 0.1).item() == pytest.approx(0.2)
    assert mask_size_loss(torch.full((1, 1, 4, 4), 0.35), 0.3, 0.1).item() == 0
    two = torch.stack([torch.full((1, 4, 4), 0.0), torch.full((1, 4, 4), 1.0)])  # means 0 and 1: hinges 0.2 and 0.6
    assert mask_size_loss(two, 0.3, 0.1).item() == pytest.approx(0.4)
    # Edge mass: the share of a mask's mass within edge_px of the border.
    uniform = torch.ones(1, 1, 8, 8)
    assert edge_mass(uniform, 1).item() == pytest.approx(28 / 64)  # 64 - 6 * 6 border pixels
    assert edge_mass(uniform, 2).item() == pytest.approx(48 / 64)
    centre = torch.zeros(1, 1, 8, 8)
    centre[..., 3:5, 3:5] = 1
    border_only = uniform.clone()
    border_only[..., 1:7, 1:7] = 0
    assert edge_mass(centre, 1).item() == 0 and edge_mass(border_only, 1).item() == pytest.approx(1)
    assert edge_loss(torch.cat([centre, border_only]), 1).item() == pytest.approx(0.5)
    assert edge_mass(torch.zeros(1, 1, 8, 8), 1).item() == 0  # an empty mask has no edge mass
    # LSGAN: mean squared distance to the target.
    assert lsgan_loss(torch.tensor([0.0, 2.0]), 1.0).item() == pytest.approx(1.0)


def test_counterfactual_of_one_seed_and_class_is_the_observational_image():
    generator = tiny_cgn()
    observational = generator.generate(generator.sample_latents([11, 12], 1.0), torch.tensor([1, 2]), 1.0)
    seeds = torch.tensor([[11, 11, 11], [12, 12, 12]])
    counterfactual = generator.generate_counterfactuals(generator.counterfactual_latents(seeds, 1.0), torch.tensor([[1, 1, 1], [2, 2, 2]]))
    assert torch.equal(observational, counterfactual)
    assert observational.shape == (2, 3, 8, 8) and 0 <= observational.min() and observational.max() <= 1
    # Changing the background's class leaves the mask alone and changes the image; the mask follows the shape's class.
    latents = generator.counterfactual_latents(torch.tensor([[11, 11, 11]] * 2), 1.0)
    masks, _, backgrounds = generator.mechanisms(latents, torch.tensor([[1, 1, 1], [1, 1, 0]]))
    assert torch.equal(masks[0], masks[1]) and not torch.equal(backgrounds[0], backgrounds[1])
    # An image does not depend on its batch (batch norm runs on its running statistics).
    alone = generator.generate(generator.sample_latents([12], 1.0), torch.tensor([2]), 1.0)
    torch.testing.assert_close(alone[0], observational[1])


def test_save_and_load_are_strict_and_keep_the_id(tmp_path):
    generator = tiny_cgn()
    generator.save(tmp_path / "cgn")
    loaded = load_generator("cgn", str(tmp_path / "cgn"), torch.device("cpu"))
    assert loaded.generator_id == generator.generator_id and loaded.generator_id.startswith("cgn-")
    assert tiny_cgn(1).generator_id != generator.generator_id  # the id names the weights
    latents = generator.sample_latents([3], 1.0)
    assert torch.equal(loaded.generate(latents, torch.tensor([0]), 1.0), generator.generate(latents, torch.tensor([0]), 1.0))
    # A missing key, a CVAE directory and a missing directory: one line each.
    state = torch.load(tmp_path / "cgn" / WEIGHTS_NAME, weights_only=True)
    state.pop("shape.project.weight")
    torch.save(state, tmp_path / "cgn" / WEIGHTS_NAME)
    assert "missing keys: shape.project.weight" in one_line_error(lambda: load_cgn(tmp_path / "cgn"))
    CvaeGenerator(ConditionalVae(CvaeArchitecture(num_classes=3, image_size=8, hidden_dim=4, latent_dim=2))).save(tmp_path / "cvae")
    assert 'not a CGN config (expected "generator": "cgn", got \'cvae\')' in one_line_error(lambda: load_cgn(tmp_path / "cvae"))
    assert "CGN directory not found" in one_line_error(lambda: load_cgn(tmp_path / "nowhere"))


KILLED_EXIT_CODE = 9


def _counterfactual_producer() -> UnitProducer:
    return UnitProducer(tiny_cgn(), COUNTERFACTUAL, None, job_seed=7, stream="counterfactual", batch_size=3)


def _write_unit(store_root: Path, kill_after: int | None) -> None:
    """Write the test's unit through a UnitWriter; with ``kill_after``, the process dies at that sample (no close, no cleanup)."""
    producer = _counterfactual_producer()
    writer = UnitWriter(tiny_store(store_root, 3), "counterfactual", "g0")

    def make(start: int):
        for index, sample in enumerate(producer.samples(UNIT, start)):
            if index == kill_after:
                time.sleep(0.5)  # let the writer's committer thread commit the full shards first
                os._exit(KILLED_EXIT_CODE)
            yield sample

    writer.write_unit(UNIT.unit_id, make)
    writer.close()


def _stream_samples(stream_dir: Path) -> dict[str, str]:
    """Every committed sample's member name -> sha256 of its bytes."""
    members = {}
    for record in Manifest(stream_dir).shards():
        with tarfile.open(stream_dir / record.name) as archive:
            for member in archive.getmembers():
                members[member.name] = hashlib.sha256(archive.extractfile(member).read()).hexdigest()
    return members


def test_counterfactual_units_are_deterministic_recorded_and_resume_after_a_kill(tmp_path):
    producer, unit = _counterfactual_producer(), UNIT
    samples = list(producer.samples(unit))
    assert len(samples) == 4 * 5
    records = [sample["json"] for sample in samples]
    assert all(record["mechanism_classes"]["shape"] == 1 and sample["cls"] == 1 for record, sample in zip(records, samples))
    assert {record["mechanism_classes"]["texture"] for record in records} == {0, 1, 2}  # mixed over the generator's classes
    assert {record["mechanism_classes"]["background"] for record in records} == {0, 1, 2}
    assert len({record["mechanism_seeds"]["shape"] for record in records}) == 4  # one shape per seed, 5 counterfactuals each
    assert all(record["mechanism_seeds"]["shape"] == record["latent_seed"] for record in records)
    # The recorded classes and seeds regenerate the image.
    generator, first = producer.generator, records[6]
    seeds = torch.tensor([[first["mechanism_seeds"][name] for name in ("shape", "texture", "background")]])
    classes = torch.tensor([[first["mechanism_classes"][name] for name in ("shape", "texture", "background")]])
    image = generator.generate_counterfactuals(generator.counterfactual_latents(seeds, 1.0), classes)[0]
    assert producer.encoding.encode(image) == samples[6][producer.encoding.image_format]

    _write_unit(tmp_path / "a", None)
    _write_unit(tmp_path / "b", None)
    killed = multiprocessing.get_context("spawn").Process(target=_write_unit, args=(tmp_path / "c", 8))
    killed.start()
    killed.join(timeout=120)
    assert killed.exitcode == KILLED_EXIT_CODE
    partial = Manifest(tmp_path / "c" / "counterfactual").unit_progress()[UNIT.unit_id]
    assert not partial.done and 0 < partial.samples < 20  # killed mid-unit, after committing whole shards
    _write_unit(tmp_path / "c", None)  # a restarted actor with the same writer id resumes the unit
    uninterrupted = _stream_samples(tmp_path / "a" / "counterfactual")
    assert len(uninterrupted) == 3 * 20  # png, cls, json per sample
    assert _stream_samples(tmp_path / "b" / "counterfactual") == uninterrupted
    assert _stream_samples(tmp_path / "c" / "counterfactual") == uninterrupted
    progress = Manifest(tmp_path / "c" / "counterfactual").unit_progress()[unit.unit_id]
    assert progress.done and progress.samples == 20


def test_counterfactuals_need_a_generator_with_mechanisms(tmp_path):
    cvae = CvaeGenerator(ConditionalVae(CvaeArchitecture(num_classes=3, image_size=8, hidden_dim=4, latent_dim=2)))
    assert "cannot compose counterfactuals" in one_line_error(lambda: UnitProducer(cvae, COUNTERFACTUAL, None, 0, "s", 4))
    with pytest.raises(DatagenError, match="no GANSpace layer"):
        tiny_cgn().direction_features(torch.zeros(1, 16), torch.tensor([0]))
    job = "name: j\noutput_dir: out\ntrain: {model: small_cnn, streams: {original: {batch_size: 4}}}\n"
    (tmp_path / "cvae.yaml").write_text(job + "datagen: {generator: {kind: cvae}, strategy: {kind: counterfactual}}\n")
    with pytest.raises(ConfigError, match="datagen.strategy kind counterfactual needs datagen.generator.kind cgn"):
        load_config(tmp_path / "cvae.yaml")
    (tmp_path / "cgn.yaml").write_text(job + "datagen: {generator: {kind: cgn}, strategy: {kind: intervention, top_k: 2, components_per_seed: 1}}\n")
    with pytest.raises(ConfigError, match="datagen.strategy kind intervention edits GANSpace directions"):
        load_config(tmp_path / "cgn.yaml")
    (tmp_path / "texture.yaml").write_text(job + "datagen: {generator: {kind: cgn, cgn_train: {texture_weight: 1.0}}, strategy: {kind: observational}}\n")
    with pytest.raises(ConfigError, match="datagen.generator.cgn_train texture_weight > 0 needs texture_features"):
        load_config(tmp_path / "texture.yaml")
    assert json.loads(json.dumps(COUNTERFACTUAL.model_dump(mode="json")))["counterfactuals_per_shape"] == 5
