"""Config limits: what a hostile or careless file cannot get past the loader and the models.

The YAML loader bounds size, nesting and alias expansion (before anything is built), refuses
repeated keys, and echoes only a few dozen characters of a bad value; the models refuse inf and
nan everywhere, sizes past their bounds, and stream names that could leave the store.
"""

import importlib
import os
import re
import time
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

import cluster.config_yaml
from cluster.config import MAX_PROBLEMS, JobConfig, load_config
from cluster.config_yaml import MAX_CONFIG_BYTES, MAX_ECHO_CHARS, MAX_NESTING, MAX_VALUES, ConfigLoader
from cluster.errors import ConfigError
from experiments.colored_digits.config import ExperimentConfig

BASE = "name: tiny\noutput_dir: out\ntrain:\n  model: resnet18\n  streams: {original: {batch_size: 8}}\n"


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def _refusal(path: Path, overrides: list[str] = (), model: type[BaseModel] = JobConfig) -> str:
    """The one-line ConfigError that loading ``path`` must raise."""
    with pytest.raises(ConfigError) as raised:
        load_config(path, list(overrides), model=model)
    message = str(raised.value)
    assert "\n" not in message, message
    return message


def _billion_laughs(levels: int = 10) -> str:
    lines = ['  deepspeed:', '    l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"    l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return BASE + "\n".join(lines) + "\n"


def test_the_loader_is_libyaml_where_pyyaml_has_it():
    if yaml.__with_libyaml__:
        assert issubclass(ConfigLoader, yaml.CSafeLoader)
    assert issubclass(ConfigLoader, yaml.constructor.SafeConstructor)


@pytest.mark.timeout(10)
def test_billion_laughs_is_refused_in_well_under_a_second(tmp_path):
    path = _file(tmp_path, _billion_laughs())
    started = time.perf_counter()
    message = _refusal(path)
    assert time.perf_counter() - started < 1.0
    assert message.startswith(f"{path}:") and f"more than {MAX_VALUES} values" in message


def test_aliases_within_the_bounds_still_work(tmp_path):
    text = BASE.replace("streams: {original: {batch_size: 8}}", "streams: {original: &s {batch_size: 8}, interventional: *s}")
    config = load_config(_file(tmp_path, text))
    assert config.train.streams["interventional"].batch_size == 8
    merged = BASE.replace("{original: {batch_size: 8}}", "{original: {<<: {batch_size: 8, loss_weight: 0.5}, batch_size: 4}}")
    stream = load_config(_file(tmp_path, merged)).train.streams["original"]
    assert (stream.batch_size, stream.loss_weight) == (4, 0.5)  # a merge key may be overridden: not a duplicate


def test_an_alias_inside_its_own_node_is_refused(tmp_path):
    path = _file(tmp_path, BASE + "  deepspeed: &loop {again: *loop}\n")
    assert _refusal(path) == f"{path}:6: alias *loop refers to a node that contains it"


def test_aliases_cannot_stack_nesting_past_the_limit(tmp_path):
    # Each anchor alone is shallow enough; expanded one inside the other they are not.
    deep = "[" * 40 + "]" * 40
    text = BASE + f"  deepspeed:\n    a: &a {deep}\n    b: {deep[:40]}*a{deep[40:]}\n"
    message = _refusal(_file(tmp_path, text))
    assert message.endswith(f":8: nested deeper than {MAX_NESTING} levels once alias *a is expanded")


def test_an_oversized_file_is_refused_by_its_size(tmp_path):
    path = _file(tmp_path, BASE + "#" * MAX_CONFIG_BYTES + "\n")
    assert _refusal(path) == f"{path}: config file is larger than 1 MiB"


def test_a_file_that_is_not_regular_is_refused_without_reading(tmp_path):
    fifo = tmp_path / "job.yaml"
    os.mkfifo(fifo)  # opening it would wait for a writer that never comes
    assert _refusal(fifo) == f"{fifo}: not a regular file, so not a config file"
    assert _refusal(tmp_path) == f"{tmp_path}: not a regular file, so not a config file"


def test_bytes_that_are_not_utf8_or_yaml_are_named(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_bytes(b"name: tiny\noutput_dir: \xff\n")
    assert _refusal(path) == f"{path}: cannot read config (not UTF-8 text: byte 0xff at offset 23)"
    path.write_text("name: tiny\x00\n")
    assert "invalid YAML (character #x0000 at offset 10" in _refusal(path)


@pytest.mark.parametrize("text, line, key", [
    ("name: tiny\noutput_dir: out\nname: other\n", 3, "'name'"),
    (BASE + "  model: resnet50\n", 6, "'model'"),
    (BASE.replace("{batch_size: 8}", "{batch_size: 8, batch_size: 16}"), 5, "'batch_size'"),
])
def test_a_repeated_key_is_refused_naming_it_and_its_lines(tmp_path, text, line, key):
    path = _file(tmp_path, text)
    message = _refusal(path)
    assert message.startswith(f"{path}:{line}: invalid YAML (duplicate key {key}, first on line ")


@pytest.mark.parametrize("style, levels", [("flow", 10_000), ("block", 600)])  # 600 indented levels fill most of 1 MiB
def test_deep_nesting_is_refused_without_recursion_error(tmp_path, style, levels):
    if style == "flow":
        nested = "{a: " * levels + "1" + "}" * levels
        text = BASE + f"  deepspeed: {nested}\n"
    else:
        text = BASE + "  deepspeed:\n" + "".join("  " * (depth + 2) + "a:\n" for depth in range(levels)) + "  " * (levels + 2) + "1\n"
    path = _file(tmp_path, text)
    assert re.fullmatch(rf"{re.escape(str(path))}:\d+: nested deeper than {MAX_NESTING} levels", _refusal(path))


def test_nesting_up_to_the_limit_is_accepted(tmp_path):
    depth_used = 2  # the top-level mapping and train's
    nested = "{a: " * (MAX_NESTING - depth_used) + "1" + "}" * (MAX_NESTING - depth_used)
    config = load_config(_file(tmp_path, BASE + f"  deepspeed: {nested}\n"))
    assert "a" in config.train.deepspeed
    assert f"nested deeper than {MAX_NESTING} levels" in _refusal(_file(tmp_path, BASE + f"  deepspeed: [{nested}]\n"))


def test_too_many_values_are_refused(tmp_path):
    rows = "".join(f"    k{index}: 0\n" for index in range(MAX_VALUES // 2))
    assert f"more than {MAX_VALUES} values" in _refusal(_file(tmp_path, BASE + "  deepspeed:\n" + rows))


def test_a_huge_bad_value_gives_a_short_line(tmp_path):
    huge = "x" * (MAX_CONFIG_BYTES - 1000)
    path = _file(tmp_path, BASE.replace("model: resnet18", f"model: {huge}"))
    message = _refusal(path)
    assert len(message) < len(str(path)) + 300, len(message)
    assert f"(got '{'x' * MAX_ECHO_CHARS}...')" in message
    assert len(_refusal(_file(tmp_path, f"name: tiny\noutput_dir: out\n{huge}: 1\n"))) < len(str(path)) + 300


def test_thousands_of_problems_make_a_bounded_message(tmp_path):
    rows = "".join(f"  unknown_{index}: 1\n" for index in range(2000))
    message = str(pytest.raises(ConfigError, load_config, _file(tmp_path, BASE + rows)).value)
    assert len(message.splitlines()) == MAX_PROBLEMS + 1
    assert message.splitlines()[-1] == f"and {2000 - MAX_PROBLEMS} more problems"


@pytest.mark.parametrize("override, expected", [
    ("train.streams.original.loss_weight=.inf", "train.streams.original.loss_weight must be a finite number (got inf)"),
    ("train.optimizer.lr=.inf", "train.optimizer.lr must be a finite number (got inf)"),
    ("train.optimizer.lr=.nan", "train.optimizer.lr must be a finite number (got nan)"),
    ("train.optimizer.lr='-inf'", "train.optimizer.lr must be a finite number (got '-inf')"),
    ("train.data.mean=[.nan, 0, 0]", "train.data.mean.0 must be a finite number (got nan)"),
    ("train.worker_resources={CPU: .inf}", "train.worker_resources.CPU must be a finite number (got inf)"),
    ("train.streams.original.wait_timeout_s=.inf", "train.streams.original.wait_timeout_s must be a finite number (got inf)"),
    ("train.deepspeed={optimizer: {params: {eps: .nan}}}", "train.deepspeed must hold only finite numbers (train.deepspeed.optimizer.params.eps is nan)"),
    ("datagen.strategy.offset_range=[-.inf, 1]", "datagen.strategy.offset_range.0 must be a finite number (got -inf)"),
    ("datagen.transfer.gatys.style_weight=.inf", "datagen.transfer.gatys.style_weight must be a finite number (got inf)"),
    ("datagen.generator.train.learning_rate=.nan", "datagen.generator.train.learning_rate must be a finite number (got nan)"),
    ("datagen.actor_resources={datagen: .inf}", "datagen.actor_resources.datagen must be a finite number (got inf)"),
])
def test_inf_and_nan_are_refused_everywhere(tmp_path, override, expected):
    path = _file(tmp_path, BASE)
    assert _refusal(path, [override]) == f"{path}: {expected}"


def _models(root: type[BaseModel]) -> set[type[BaseModel]]:
    """Every model reachable from ``root``'s fields (through lists, dicts, unions and optionals)."""
    found, pending = set(), [root]
    while pending:
        annotation = pending.pop()
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in found:
                found.add(annotation)
                pending.extend(field.annotation for field in annotation.model_fields.values())
        else:
            pending.extend(typing.get_args(annotation))
    return found


@pytest.mark.parametrize("root", [JobConfig, ExperimentConfig])
def test_every_config_model_refuses_unknown_keys_and_non_finite_numbers(root):
    models = _models(root)
    assert len(models) >= 10
    for model in models:
        assert model.model_config.get("extra") == "forbid", model
        assert model.model_config.get("allow_inf_nan") is False, model


@pytest.mark.parametrize("override, expected", [
    ("train.streams.original.batch_size=100000000000000000000", "train.streams.original.batch_size must be <= 65536"),
    ("train.num_classes=1000000000000", "train.num_classes must be <= 1000000"),
    ("train.data.crop_size=100000", "train.data.crop_size must be <= 4096"),
    ("train.data.resize_size=100000", "train.data.resize_size must be <= 4096"),
    ("train.data.jitter=2", "train.data.jitter must be <= 1.0"),
    ("train.max_steps=100000000000000", "train.max_steps must be <= 1000000000"),
    ("train.workers=1000000", "train.workers must be <= 1024"),
    ("train.seed=18446744073709551616", "train.seed must be <= 4294966"),
    ("train.data.num_threads=100000", "train.data.num_threads must be <= 256"),
    ("train.keep_checkpoints=1000000", "train.keep_checkpoints must be <= 1000"),
    ("datagen.actors=100000", "datagen.actors must be <= 1024"),
    ("datagen.batch_size=100000000", "datagen.batch_size must be <= 65536"),
    ("datagen.seed=-1", "datagen.seed must be >= 0"),
    ("datagen.seed=4294967296", "datagen.seed must be <= 4294967295"),
    ("datagen.classes=[0, 1000000]", "datagen.classes.1 must be < 1000000"),
    ("datagen.directions.seed=4", "datagen.directions.seed must be <= 3"),
    ("datagen.directions.samples=10000000000", "datagen.directions.samples must be <= 1000000000"),
    ("datagen.strategy.seeds_per_class=10000000000", "datagen.strategy.seeds_per_class must be <= 1000000000"),
    ("datagen.generator.train.model.image_size=1024", "datagen.generator.train.model.image_size must be <= 256"),
    ("datagen.transfer.actors=5000", "datagen.transfer.actors must be <= 1024"),
    ("datagen.transfer.gatys.save_size=10000", "datagen.transfer.gatys.save_size must be <= 4096"),
    ("shards.max_samples_per_shard=10000000000", "shards.max_samples_per_shard must be <= 1000000"),
    ("name=" + "x" * 101, "name must be at most 100 characters"),
])
def test_absurd_sizes_are_refused_with_the_bound(tmp_path, override, expected):
    path = _file(tmp_path, BASE)
    assert _refusal(path, [override]).startswith(f"{path}: {expected}")


@pytest.mark.parametrize("override, expected", [
    ("data.image_size=100000", "data.image_size must be <= 256"),
    ("seeds=[0, 18446744073709551616]", "seeds.1 must be <= 4294966"),
    ("batch_size=100000000", "batch_size must be <= 65536"),
    ("irm.irm_weight=.inf", "irm.irm_weight must be a finite number (got inf)"),
])
def test_the_experiment_config_has_the_same_bounds(override, expected):
    path = Path(__file__).parent.parent / "configs" / "experiments" / "colored-digits.yaml"
    assert _refusal(path, [override], model=ExperimentConfig).startswith(f"{path}: {expected}")


@pytest.mark.parametrize("text, path_in_error, name", [
    ("shards: {prepare: {'../../x': {source: .}}}", "shards.prepare.../../x", "../../x"),
    ("shards: {prepare: {'/etc': {source: .}}}", "shards.prepare./etc", "/etc"),
    ("train: {streams: {'pipe:rm': {batch_size: 1}}}", "train.streams.pipe:rm", "pipe:rm"),
    ("datagen: {stream: '..'}", "datagen.stream", ".."),
    ("datagen: {generator: {train_stream: a/b}}", "datagen.generator.train_stream", "a/b"),
    ("datagen: {transfer: {stream: ''}}", "datagen.transfer.stream", ""),
    ("datagen: {transfer: {content_stream: x.y}}", "datagen.transfer.content_stream", "x.y"),
    ("datagen: {transfer: {style_stream: 'a b'}}", "datagen.transfer.style_stream", "a b"),
])
def test_stream_names_are_checked_by_the_model(tmp_path, text, path_in_error, name):
    (tmp_path / "x").mkdir()
    config = yaml.safe_load(BASE)
    for section, values in yaml.safe_load(text).items():
        config.setdefault(section, {}).update(values)
    path = _file(tmp_path, yaml.safe_dump(config))
    assert _refusal(path).startswith(f"{path}: {path_in_error} must match ^[A-Za-z0-9_]+$ (got {name!r})")


def test_a_stream_name_too_long_for_the_store_is_refused(tmp_path):
    path = _file(tmp_path, BASE)
    assert f"{path}: datagen.stream must be at most 100 characters" in _refusal(path, ["datagen.stream=" + "s" * 101])


@pytest.mark.parametrize("override, expected", [
    (".".join(["a"] * (MAX_NESTING + 1)) + "=1", f"the key path is deeper than {MAX_NESTING} levels"),
    ("train.deepspeed.x=" + "[" * 100 + "]" * 100, f"nested deeper than {MAX_NESTING} levels"),
    ("train.deepspeed.x={a: 1, a: 2}", "invalid YAML (duplicate key 'a', first on line 1)"),
    ("train.deepspeed.x=&a [*a]", "alias *a refers to a node that contains it"),
    ("train.model=[" + "m" * 10_000, "invalid YAML"),
])
def test_set_values_pass_the_same_loader(tmp_path, override, expected):
    message = _refusal(_file(tmp_path, BASE), [override])
    assert message.startswith("--set '") and expected in message
    assert len(message) < 300


@pytest.fixture
def pure_python_loader(monkeypatch):
    """cluster.config_yaml rebuilt as it is where PyYAML has no libyaml; restored afterwards."""
    monkeypatch.delattr(yaml, "CSafeLoader", raising=False)
    module = importlib.reload(cluster.config_yaml)
    assert not issubclass(module.ConfigLoader, getattr(yaml.cyaml, "CParser", ()))
    yield module
    monkeypatch.undo()
    importlib.reload(cluster.config_yaml)


@pytest.mark.timeout(30)
def test_the_pure_python_fallback_has_the_same_bounds(pure_python_loader):
    parse = pure_python_loader.parse_yaml
    assert parse(BASE, "job.yaml")["train"]["model"] == "resnet18"
    for text, expected in [
        (_billion_laughs(), f"more than {MAX_VALUES} values"),
        ("a: " + "[" * 10_000 + "]" * 10_000, f"nested deeper than {MAX_NESTING} levels"),
        ("a: 1\nb: 2\na: 3\n", "job.yaml:3: invalid YAML (duplicate key 'a', first on line 1)"),
    ]:
        with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            parse(text, "job.yaml")
