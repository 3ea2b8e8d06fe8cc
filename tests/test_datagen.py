"""Generation without Ray: weights loading, the edit, strategies, reproducible units, bad input."""

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from datagen.actors import GeneratorActor
from datagen.config import DatagenConfig
from datagen.directions import Directions, load_directions
from datagen.errors import DatagenError
from datagen.generators.biggan import load_biggan
from datagen.service import PLAN_FILE, plan_generation, planned_samples
from datagen.strategies import (
    StrategyConfig,
    component_ranges,
    intervene,
    reference_ranges,
    seed_specs,
)
from datagen.strategy_config import PRESETS
from shards.errors import StoreFileError
from shards.manifest import Manifest
from tests.datagen_helpers import save_tiny_biggan, tiny_datagen_config, tiny_store


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    return save_tiny_biggan(tmp_path_factory.mktemp("tiny-biggan"))


def test_saved_random_biggan_loads_back_by_path(tiny):
    weights, _ = tiny
    generator = load_biggan(str(weights), torch.device("cpu"))
    latents = generator.sample_latents([3, 4], truncation=0.5)
    images = generator.generate(latents, torch.tensor([0, 2]), truncation=0.5)
    assert images.shape == (2, 3, 16, 16) and 0 <= images.min() and images.max() <= 1
    assert torch.equal(load_biggan(str(weights), torch.device("cpu")).generate(latents, torch.tensor([0, 2]), 0.5), images)
    assert generator.generator_id.startswith("biggan-") and len(generator.generator_id) == len("biggan-") + 12


def test_checkpoint_with_a_missing_key_fails_in_one_line(tiny, tmp_path):
    weights, _ = tiny
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((weights / "config.json").read_text())
    state = torch.load(weights / "pytorch_model.bin", weights_only=True)
    del state["generator.gen_z.bias"]
    torch.save(state, broken / "pytorch_model.bin")
    with pytest.raises(DatagenError, match=r"missing keys: generator.gen_z.bias") as error:
        load_biggan(str(broken), torch.device("cpu"))
    assert "\n" not in str(error.value)


def test_missing_weights_path_fails_in_one_line(tmp_path):
    with pytest.raises(DatagenError, match="not a directory and not a model name"):
        load_biggan(str(tmp_path / "nowhere"), torch.device("cpu"))


def test_latents_depend_only_on_their_seed(tiny):
    generator = load_biggan(str(tiny[0]), torch.device("cpu"))
    together = generator.sample_latents([5, 6, 7], truncation=0.7)
    assert torch.equal(together[1], generator.sample_latents([6], truncation=0.7)[0])
    assert together.abs().max() <= 2 * 0.7  # truncated at 2 before scaling


def test_edit_sets_the_coordinate_and_keeps_the_rest():
    rng = np.random.default_rng(0)
    latents = torch.from_numpy(rng.normal(size=(5, 8))).float()
    directions = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(5, 8))).float(), dim=1)
    offsets, mean = torch.tensor([-3.0, 0.0, 1.5, 4.0, 12.0]), torch.from_numpy(rng.normal(size=8)).float()
    edited = intervene(latents, directions, offsets, mean)
    coordinates = ((edited - mean) * directions).sum(dim=1)
    torch.testing.assert_close(coordinates, offsets)
    orthogonal = lambda z: (z - mean) - ((z - mean) * directions).sum(1, keepdim=True) * directions  # noqa: E731
    torch.testing.assert_close(orthogonal(edited), orthogonal(latents), atol=1e-5, rtol=0)


def test_presets_match_the_paper_volumes():
    per_class = {name: StrategyConfig(preset=name) for name in PRESETS}
    assert {name: s.images_per_seed * s.seeds_per_class for name, s in per_class.items()} == {
        "paper": 5000, "none": 2000, "weak": 2000, "medium": 2000, "strong": 2000, "gan-augmentation": 2000,
    }
    assert per_class["gan-augmentation"].truncation == 0.2 and per_class["strong"].offset_range == (-9.0, 9.0)
    assert StrategyConfig.model_validate({"preset": "weak", "seeds_per_class": 3}).seeds_per_class == 3


def test_reference_ranges_and_offsets_stay_within_scaled_ranges():
    ranges = reference_ranges()
    assert len(ranges.low) == 60 and (ranges.low[0], ranges.high[0]) == (-3, 3) and (ranges.low[51], ranges.high[51]) == (6, 12)
    strategy = StrategyConfig(preset="paper", scale=0.5)
    specs = [spec for seed in range(50) for spec in seed_specs(strategy, ranges, 0, 7, seed)]
    assert len(specs) == 250 and all(len(set(s.components for s in specs[i : i + 5])) == 5 for i in range(0, 250, 5))
    for spec in specs:
        component, offset = spec.components[0], spec.offsets[0]
        assert 0.5 * ranges.low[component] <= offset <= 0.5 * ranges.high[component]
    assert seed_specs(strategy, ranges, 0, 7, 3) == seed_specs(strategy, ranges, 0, 7, 3)
    assert seed_specs(strategy, ranges, 0, 7, 3) != seed_specs(strategy, ranges, 1, 7, 3)


def test_spread_ranges_for_other_generators(tiny):
    directions = load_directions(tiny[1])
    ranges = component_ranges(StrategyConfig(top_k=4, components_per_seed=2, spread_factor=2.0), directions)
    assert ranges.source == "spread"
    np.testing.assert_allclose(ranges.high, 2.0 * directions.lat_stdev)


def test_same_unit_twice_gives_byte_identical_shards(tiny, tmp_path):
    config = tiny_datagen_config(*tiny)
    digests = []
    for run in ("a", "b"):
        settings, units = plan_generation(config, tmp_path, tiny_store(tmp_path / run, 3))
        actor = GeneratorActor(settings, "g0")
        actor.run_unit(units[0])
        actor.close()
        digests.append([(record.name, record.sha256) for record in Manifest(tmp_path / run / "interventional").shards()])
    assert digests[0] == digests[1] and len(digests[0]) == 2  # 4 images in shards of 3


def test_samples_record_what_was_done(tiny, tmp_path):
    config = tiny_datagen_config(*tiny)
    settings, units = plan_generation(config, tmp_path, tiny_store(tmp_path / "store", 100))
    actor = GeneratorActor(settings, "g0")
    samples = list(actor.producer.samples(units[0]))
    provenance = samples[0]["json"]
    assert set(provenance) >= {"class", "seed", "truncation", "components", "offsets", "generator", "directions_sha256"}
    assert provenance["directions_sha256"] == load_directions(tiny[1]).content_hash
    assert provenance["truncation"] == 0.5 and len(provenance["components"]) == 1
    # Resuming a unit mid-way gives the same remaining samples (sample i depends only on the unit and i).
    assert [s["__key__"] for s in actor.producer.samples(units[0], start=1)] == [s["__key__"] for s in samples[1:]]
    actor.close()


def test_planned_volume(tiny, tmp_path):
    config = tiny_datagen_config(*tiny, classes=[0, 2])
    _, units = plan_generation(config, tmp_path, tiny_store(tmp_path / "store", 100))
    assert len(units) == 4 and planned_samples(config, units) == 2 * 4 * 2


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(actors=0), "datagen.actors must be >= 1"),
        (dict(generator={"weights": "/nonexistent/weights"}), "not a directory and not a model name"),
        (dict(classes=[5]), r"datagen.classes \[5\] are not classes"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tiny, tmp_path, overrides, message):
    config = tiny_datagen_config(*tiny, **overrides)
    with pytest.raises(DatagenError, match=message) as error:
        plan_generation(config, tmp_path, tiny_store(tmp_path / "store", 100))
    assert "\n" not in str(error.value) and not (tmp_path / "store").exists()


def test_directions_of_another_generator_are_refused(tiny, tmp_path):
    # Directions made for a generator whose latent has 8 dimensions instead of 16.
    directions = load_directions(tiny[1])
    Directions(**{**directions.__dict__, "lat_comp": directions.lat_comp[:, :8], "lat_mean": directions.lat_mean[:8]}).save(tmp_path / "d8.npz")
    config = tiny_datagen_config(tiny[0], tmp_path / "d8.npz")
    with pytest.raises(DatagenError, match="latent of size 8.*size 16"):
        plan_generation(config, tmp_path, tiny_store(tmp_path / "store", 100))


def test_unknown_strategy_name_is_a_config_error():
    with pytest.raises(ValidationError, match="preset"):
        DatagenConfig(strategy="bogus")


def test_rerun_with_another_strategy_is_refused(tiny, tmp_path):
    plan_generation(tiny_datagen_config(*tiny), tmp_path, tiny_store(tmp_path / "store", 100))
    plan_generation(tiny_datagen_config(*tiny, actors=2), tmp_path, tiny_store(tmp_path / "store", 100))  # same plan
    changed = tiny_datagen_config(*tiny, strategy={"kind": "observational", "seeds_per_class": 4})
    with pytest.raises(DatagenError, match=r"generated with other settings \(directions_sha256, strategy differ\)"):
        plan_generation(changed, tmp_path, tiny_store(tmp_path / "store", 100))


@pytest.mark.parametrize(("content", "message"), [
    (b'{"strategy": ', r"datagen-plan.json: not valid JSON .*delete the stream to start over"),
    (b'["a list"]', r"datagen-plan.json: not a JSON object of settings"),
    (b"\xff\xfe", r"datagen-plan.json: not valid JSON"),
])
def test_a_damaged_plan_record_is_one_line_and_stays(tiny, tmp_path, content, message):
    config = tiny_datagen_config(*tiny)
    plan_generation(config, tmp_path, tiny_store(tmp_path / "store", 100))
    record = tmp_path / "store" / config.stream / PLAN_FILE
    record.write_bytes(content)
    with pytest.raises(DatagenError, match=message) as error:
        plan_generation(config, tmp_path, tiny_store(tmp_path / "store", 100))
    assert "\n" not in str(error.value) and record.read_bytes() == content


def test_a_plan_record_that_is_a_link_is_refused(tiny, tmp_path):
    config = tiny_datagen_config(*tiny)
    plan_generation(config, tmp_path, tiny_store(tmp_path / "store", 100))
    record = tmp_path / "store" / config.stream / PLAN_FILE
    (tmp_path / "elsewhere.json").write_bytes(record.read_bytes())
    record.unlink()
    record.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(StoreFileError, match="generation plan is a symbolic link"):
        plan_generation(config, tmp_path, tiny_store(tmp_path / "store", 100))
