"""The CVAE generator: seeded latents, images, GANSpace features, and save/load of its weights."""

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from cluster.config import load_config
from datagen.errors import DatagenError
from datagen.generators.cvae import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    ConditionalVae,
    CvaeGenerator,
    load_cvae,
)
from datagen.generators.cvae_config import CvaeArchitecture
from datagen.generators.loading import load_generator
from tests import bad_input_helpers

TINY = CvaeArchitecture(num_classes=4, image_size=8, hidden_dim=16, latent_dim=3, label_embedding_dim=2)


def tiny_generator(seed: int = 0) -> CvaeGenerator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CvaeGenerator(ConditionalVae(TINY))


def one_line_error(call) -> str:
    return bad_input_helpers.one_line_error(call, DatagenError)


def test_generate_gives_images_in_unit_range_on_cpu():
    generator = tiny_generator()
    latents = generator.sample_latents(range(5), truncation=1.0)
    images = generator.generate(latents, torch.tensor([0, 1, 2, 3, 0]), truncation=1.0)
    assert images.shape == (5, 3, 8, 8)
    assert images.dtype == torch.float32 and images.device.type == "cpu"
    assert images.min() >= 0 and images.max() <= 1
    # Different classes from the same latent must differ: the label reaches the decoder.
    same_latent = latents[:1].expand(2, -1)
    pair = generator.generate(same_latent, torch.tensor([0, 1]), truncation=1.0)
    assert not torch.equal(pair[0], pair[1])


def test_direction_features_are_the_decoders_first_layer_and_affine_in_z():
    generator = tiny_generator()
    latents = generator.sample_latents(range(4), truncation=1.0)
    classes = torch.tensor([0, 1, 2, 3])
    features = generator.direction_features(latents, classes)
    assert features.shape == (4, TINY.hidden_dim)
    # GANSpace regresses PCA coordinates back onto z, which needs a layer linear in z for a fixed class.
    step = torch.tensor([[0.5, -1.0, 2.0]])
    moved = generator.direction_features(latents + step, classes)
    origin, class_zero = torch.zeros(1, 3), torch.tensor([0])
    shift = generator.direction_features(step, class_zero) - generator.direction_features(origin, class_zero)
    torch.testing.assert_close(moved - features, shift.expand(4, -1))


def test_sample_latents_row_depends_only_on_its_own_seed():
    generator = tiny_generator()
    batch = generator.sample_latents([3, 7, 11], truncation=1.0)
    assert batch.shape == (3, 3) and batch.dtype == torch.float32
    for row, seed in enumerate([3, 7, 11]):
        torch.testing.assert_close(batch[row], generator.sample_latents([seed], truncation=1.0)[0], rtol=0, atol=0)
    assert not torch.equal(batch[0], batch[1])
    torch.testing.assert_close(generator.sample_latents([3, 7, 11], truncation=0.5), 0.5 * batch)
    assert generator.sample_latents([], truncation=1.0).shape == (0, 3)


def test_bad_inputs_fail_with_one_line():
    generator = tiny_generator()
    assert "truncation" in one_line_error(lambda: generator.sample_latents([1], truncation=0.0))
    latents = generator.sample_latents([1, 2], truncation=1.0)
    assert "[0, 4)" in one_line_error(lambda: generator.generate(latents, torch.tensor([0, 4]), 1.0))
    assert "(N, 3)" in one_line_error(lambda: generator.generate(latents[:, :2], torch.tensor([0, 1]), 1.0))
    assert "(2,)" in one_line_error(lambda: generator.direction_features(latents, torch.tensor([0])))


def test_generator_id_names_the_weights():
    first, same, other = tiny_generator(0), tiny_generator(0), tiny_generator(1)
    assert re.fullmatch(r"cvae-[0-9a-f]{12}", first.generator_id)
    assert first.generator_id == same.generator_id
    assert first.generator_id != other.generator_id
    assert (first.latent_dim, first.num_classes, first.image_size) == (3, 4, 8)


def test_save_then_load_gives_identical_outputs(tmp_path: Path):
    generator = tiny_generator()
    generator.save(tmp_path / "cvae")
    assert sorted(path.name for path in (tmp_path / "cvae").iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    assert json.loads((tmp_path / "cvae" / CONFIG_NAME).read_text())["architecture"] == TINY.model_dump()

    loaded = load_cvae(tmp_path / "cvae")
    assert loaded.generator_id == generator.generator_id
    latents = generator.sample_latents(range(6), truncation=0.7)
    classes = torch.tensor([0, 1, 2, 3, 2, 1])
    assert torch.equal(loaded.generate(latents, classes, 0.7), generator.generate(latents, classes, 0.7))
    assert torch.equal(loaded.direction_features(latents, classes), generator.direction_features(latents, classes))


def rewrite_weights(directory: Path, edit) -> None:
    state = torch.load(directory / WEIGHTS_NAME, weights_only=True)
    edit(state)
    torch.save(state, directory / WEIGHTS_NAME)


def test_load_names_missing_and_unexpected_keys(tmp_path: Path):
    tiny_generator().save(tmp_path)
    rewrite_weights(tmp_path, lambda state: state.pop("decoder_input.weight"))
    message = one_line_error(lambda: load_cvae(tmp_path))
    assert "missing keys: decoder_input.weight" in message and str(tmp_path / WEIGHTS_NAME) in message

    tiny_generator().save(tmp_path)
    rewrite_weights(tmp_path, lambda state: state.update({"extra.bias": torch.zeros(2)}))
    assert "unexpected keys: extra.bias" in one_line_error(lambda: load_cvae(tmp_path))

    tiny_generator().save(tmp_path)
    rewrite_weights(tmp_path, lambda state: state.update({"to_mean.bias": torch.zeros(5)}))
    assert "wrong shapes: to_mean.bias (5,) != (3,)" in one_line_error(lambda: load_cvae(tmp_path))


def test_load_fails_one_line_on_missing_or_bad_files(tmp_path: Path):
    assert "not found" in one_line_error(lambda: load_cvae(tmp_path / "nowhere"))

    tiny_generator().save(tmp_path)
    (tmp_path / WEIGHTS_NAME).unlink()
    assert WEIGHTS_NAME in one_line_error(lambda: load_cvae(tmp_path))

    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    config["architecture"]["hidden_dim"] = -1
    (tmp_path / CONFIG_NAME).write_text(json.dumps(config))
    assert "architecture.hidden_dim" in one_line_error(lambda: load_cvae(tmp_path))

    (tmp_path / CONFIG_NAME).unlink()
    assert CONFIG_NAME in one_line_error(lambda: load_cvae(tmp_path))


class NotAWeight:
    """Stands for an arbitrary pickled object that must never be unpickled from a checkpoint."""


def test_load_refuses_pickled_objects(tmp_path: Path):
    tiny_generator().save(tmp_path)
    rewrite_weights(tmp_path, lambda state: state.update({"decoder_input.weight": NotAWeight()}))
    assert "cannot read CVAE weights" in one_line_error(lambda: load_cvae(tmp_path))


def test_a_missing_cvae_directory_loads_once_the_advice_is_applied(tmp_path):
    """The advice names the job's config path: applied as ``--set``, the generator loads."""
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"name": "cvae", "output_dir": str(tmp_path / "out"),
                                   "datagen": {"generator": {"kind": "cvae", "weights": str(tmp_path / "missing")}}}))

    def load(config):
        return load_generator(config.datagen.generator.kind, config.datagen.weights_path(config.output_dir), torch.device("cpu"))

    message = one_line_error(lambda: load(load_config(job)))
    advised = re.search(r"set ([A-Za-z0-9_.]+)", message)[1]
    assert advised == "datagen.generator.weights"
    tiny_generator().save(tmp_path / "cvae")
    assert load(load_config(job, [f"{advised}={tmp_path / 'cvae'}"])).num_classes == TINY.num_classes


def test_label_modulation_starts_as_the_plain_decoder_and_saves_with_its_weights(tmp_path: Path):
    modulated = TINY.model_copy(update={"label_modulation": True})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ConditionalVae(modulated)
    plain = ConditionalVae(TINY)
    plain.load_state_dict({name: tensor for name, tensor in model.state_dict().items() if not name.startswith("label_modulation")})
    latents, classes = torch.randn(4, TINY.latent_dim), torch.tensor([0, 1, 2, 3])
    # Zero gain and shift at the start: the same outputs as the decoder without modulation.
    torch.testing.assert_close(model.decode_logits(latents, classes), plain.decode_logits(latents, classes))
    with torch.no_grad():
        model.label_modulation.weight[1].fill_(0.5)
    changed = model.decode_logits(latents, classes) != plain.decode_logits(latents, classes)
    assert changed[1].any() and not changed[[0, 2, 3]].any()  # only class 1's images move
    generator = CvaeGenerator(model)
    generator.save(tmp_path / "cvae")
    loaded = load_cvae(tmp_path / "cvae")
    assert loaded.model.architecture.label_modulation and loaded.generator_id == generator.generator_id
    assert torch.equal(loaded.generate(latents, classes, 1.0), generator.generate(latents, classes, 1.0))
    # The GANSpace layer is still the first linear layer: modulation comes after it.
    torch.testing.assert_close(generator.direction_features(latents, classes), model.decoder_input(torch.cat([latents, model.label_embedding(classes)], 1)).detach())
