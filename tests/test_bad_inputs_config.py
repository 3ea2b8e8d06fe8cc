"""The bad-input suite, config part: hostile or careless job and experiment configs and ``--set``
values given to ``config check``, ``run``, ``datagen``, ``train`` and ``experiment``. Each row: exit 2,
one line naming the file (and line or dotted path), no traceback, nothing written (see
tests/bad_input_helpers.py). ``{{`` and ``}}`` are braces: argv and messages are formatted with ``{tmp}``.
"""

import os
from pathlib import Path

from cluster.config_yaml import MAX_CONFIG_BYTES, MAX_ECHO_CHARS, MAX_NESTING, MAX_VALUES
from experiments.registry import EXPERIMENTS
from tests.bad_input_helpers import BadInput, check_bad_input, table

KNOWN_KINDS = ", ".join(EXPERIMENTS)  # the registry's order, as the error names them
EXPERIMENT_TEXT = (Path(__file__).parent.parent / "configs" / "experiments" / "colored-digits.yaml").read_text()
JOB_TEXT = "name: job\noutput_dir: out\ntrain:\n  model: small_cnn\n  streams: {original: {batch_size: 4}}\n"
LAUGHS = JOB_TEXT + "  deepspeed:\n    l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"    l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]\n" for level in range(1, 10))


def _writes(name: str, content: str | bytes):
    """A setup writing one file (text or bytes)."""
    def setup(root: Path) -> None:
        path = root / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return setup


def _job(text: str):
    return _writes("job.yaml", text)


def _experiment(text: str):
    return _writes("experiment.yaml", text)


def _fifo(root: Path) -> None:
    os.mkfifo(root / "job.yaml")


CHECK = ["config", "check", "job.yaml"]
CASES = [
    # the file itself
    BadInput("empty-file", CHECK, 2, "job.yaml: a config must be a YAML mapping (got NoneType)", _job("")),
    BadInput("top-level-list", ["run", "job.yaml"], 2, "job.yaml: a config must be a YAML mapping (got list)", _job("- name: job\n")),
    BadInput("directory-as-config", ["run", "{tmp}"], 2, "{tmp}: not a regular file", None),
    BadInput("fifo-as-config", ["train", "job.yaml"], 2, "job.yaml: not a regular file", _fifo),
    BadInput("oversized-file", ["run", "job.yaml"], 2, "job.yaml: config file is larger than 1 MiB",
             _job(JOB_TEXT + "# padding\n" * (MAX_CONFIG_BYTES // 10))),
    BadInput("not-utf8", ["datagen", "job.yaml"], 2, "job.yaml: cannot read config (not UTF-8 text: byte 0xfe at offset 6)",
             _job(b"name: \xfe\n")),
    BadInput("control-character", CHECK, 2, "job.yaml: invalid YAML (character #x0007", _job("name: job\x07\n")),
    BadInput("unclosed-flow", ["datagen", "job.yaml"], 2, "job.yaml:7: invalid YAML", _job(JOB_TEXT + "datagen: {actors: [1\n")),
    # YAML structure
    BadInput("billion-laughs", ["run", "job.yaml"], 2, f"job.yaml:12: more than {MAX_VALUES} values", _job(LAUGHS)),
    BadInput("deep-nesting", ["train", "job.yaml"], 2, f"job.yaml:6: nested deeper than {MAX_NESTING} levels",
             _job(JOB_TEXT + "  deepspeed: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n")),
    BadInput("recursive-alias", CHECK, 2, "job.yaml:6: alias *me refers to a node that contains it",
             _job(JOB_TEXT + "  deepspeed: &me {again: *me}\n")),
    BadInput("undefined-alias", CHECK, 2, "job.yaml:6: invalid YAML (found undefined alias", _job(JOB_TEXT + "  deepspeed: *nowhere\n")),
    BadInput("duplicate-top-level-key", ["run", "job.yaml"], 2, "job.yaml:6: invalid YAML (duplicate key 'name', first on line 1)",
             _job(JOB_TEXT + "name: other\n")),
    BadInput("duplicate-nested-key", ["datagen", "job.yaml"], 2, "job.yaml:6: invalid YAML (duplicate key 'model', first on line 4)",
             _job(JOB_TEXT + "  model: resnet18\n")),
    BadInput("python-object-tag", ["run", "job.yaml"], 2, "job.yaml:6: invalid YAML (could not determine a constructor for the tag",
             _job(JOB_TEXT + "  deepspeed: !!python/object/apply:os.system [touch pwned]\n")),
    # values
    BadInput("huge-value-echo-is-cut", ["train", "job.yaml"], 2, f"(got '{'m' * MAX_ECHO_CHARS}...')",
             _job(JOB_TEXT.replace("small_cnn", "m" * 900_000))),
    BadInput("thousands-of-problems", CHECK, 2, "and 1997 more problems",
             _job(JOB_TEXT + "".join(f"  typo_{index}: 1\n" for index in range(2000)))),
    BadInput("infinite-loss-weight", ["run", "job.yaml"], 2,
             "job.yaml: train.streams.original.loss_weight must be a finite number (got inf)",
             _job(JOB_TEXT.replace("batch_size: 4}", "batch_size: 4, loss_weight: .inf}"))),
    BadInput("batch-size-1e20", ["train", "job.yaml"], 2, "job.yaml: train.streams.original.batch_size must be <= 65536 (got 100000000000000000000)",
             _job(JOB_TEXT.replace("batch_size: 4", "batch_size: 100000000000000000000"))),
    BadInput("prepare-stream-escapes", ["run", "job.yaml"], 2, "job.yaml: shards.prepare.../../x must match ^[A-Za-z0-9_]+$",
             _job(JOB_TEXT + "shards: {prepare: {'../../x': {source: .}}}\n")),
    BadInput("train-stream-url", ["train", "job.yaml"], 2, "job.yaml: train.streams.pipe:sh must match ^[A-Za-z0-9_]+$",
             _job(JOB_TEXT.replace("original:", "'pipe:sh':"))),
    BadInput("job-config-given-an-experiment", ["run", "experiment.yaml"], 2, "experiment.yaml: seeds is not a known key",
             _experiment(EXPERIMENT_TEXT)),
    # --set
    BadInput("set-lr-inf", ["train", "job.yaml", "--set", "train.optimizer.lr=.inf"], 2,
             "job.yaml: train.optimizer.lr must be a finite number (got inf)", _job(JOB_TEXT)),
    BadInput("set-nan-in-deepspeed", ["run", "job.yaml", "--set", "train.deepspeed={{optimizer: {{params: {{eps: .nan}}}}}}"], 2,
             "train.deepspeed must hold only finite numbers (train.deepspeed.optimizer.params.eps is nan)", _job(JOB_TEXT)),
    BadInput("counterfactual-strategy-for-a-cvae", ["datagen", "job.yaml"], 2,
             "job.yaml: datagen.strategy kind counterfactual needs datagen.generator.kind cgn",
             _job(JOB_TEXT + "datagen: {generator: {kind: cvae}, strategy: {kind: counterfactual}}\n")),
    BadInput("cgn-conv-discriminator-image-size", CHECK, 2,
             "job.yaml: datagen.generator.cgn_train discriminator conv halves the image three times: model.image_size must be a multiple of 8 (got 12)",
             _job(JOB_TEXT + "datagen: {generator: {kind: cgn, cgn_train: {model: {image_size: 12}, edge_px: 1, discriminator: conv}}}\n")),
    BadInput("unregistered-causal-model", CHECK, 2,
             "job.yaml: train.objective.causal_model is not a registered causal model (known: pointer_value, conjunction) (got 'pvr')",
             _job(JOB_TEXT + "  objective: {name: interchange_intervention, causal_model: pvr}\n")),
    BadInput("alignment-sites-not-one-per-variable", CHECK, 2,
             "job.yaml: train.objective alignment_sites gives 2 sites but causal model pointer_value has 4 variables",
             _job(JOB_TEXT + "  objective: {name: interchange_intervention, alignment_sites: [[[0, 1]], [[1, 2]]]}\n")),
    BadInput("gradient-supervision-without-pairs", CHECK, 2,
             "job.yaml: train objective.name gradient_supervision needs counterfactual pairs: set pairs: true on a stream of train.streams (original)",
             _job(JOB_TEXT + "  objective: {name: gradient_supervision}\n")),
    BadInput("set-datagen-stream-escapes", ["datagen", "job.yaml", "--set", "datagen.stream=../escaped"], 2,
             "job.yaml: datagen.stream must match ^[A-Za-z0-9_]+$ (got '../escaped')", _job(JOB_TEXT)),
    BadInput("set-train-stream-escapes", ["datagen", "job.yaml", "--set", "datagen.generator.train_stream=/etc"], 2,
             "job.yaml: datagen.generator.train_stream must match", _job(JOB_TEXT)),
    BadInput("set-transfer-stream-escapes", ["datagen", "job.yaml", "--set", "datagen.transfer.stream=a:b"], 2,
             "job.yaml: datagen.transfer.stream must match", _job(JOB_TEXT)),
    BadInput("set-absurd-actors", ["datagen", "job.yaml", "--set", "datagen.actors=1000000"], 2,
             "job.yaml: datagen.actors must be <= 1024 (got 1000000)", _job(JOB_TEXT)),
    BadInput("set-classes-1e12", ["run", "job.yaml", "--set", "train.num_classes=1000000000000"], 2,
             "job.yaml: train.num_classes must be <= 1000000", _job(JOB_TEXT)),
    BadInput("set-duplicate-key-in-value", CHECK + ["--set", "train.deepspeed={{a: 1, a: 2}}"], 2,
             "--set 'train.deepspeed={{a: 1, a: 2}}': invalid YAML (duplicate key 'a', first on line 1)", _job(JOB_TEXT)),
    BadInput("set-value-too-deep", ["train", "job.yaml", "--set", "train.deepspeed.x=" + "[" * 200 + "]" * 200], 2,
             f"nested deeper than {MAX_NESTING} levels", _job(JOB_TEXT)),
    BadInput("set-path-too-deep", ["run", "job.yaml", "--set", "train.deepspeed." + ".".join(["a"] * MAX_NESTING) + "=1"], 2,
             f"the key path is deeper than {MAX_NESTING} levels", _job(JOB_TEXT)),
    BadInput("set-invalid-yaml", ["datagen", "job.yaml", "--set", "train.model=[small_cnn"], 2,
             "--set 'train.model=[small_cnn': invalid YAML", _job(JOB_TEXT)),
    BadInput("set-malformed-path", ["train", "job.yaml", "--set", "train..model=x"], 2, "expected KEY.PATH=VALUE", _job(JOB_TEXT)),
    BadInput("set-into-a-value", ["run", "job.yaml", "--set", "name.first=x"], 2, "name is a value, not a section", _job(JOB_TEXT)),
    # the experiment config
    BadInput("experiment-duplicate-key", ["experiment", "experiment.yaml"], 2, "invalid YAML (duplicate key 'seeds', first on line",
             _experiment(EXPERIMENT_TEXT + "seeds: [7]\n")),
    BadInput("experiment-image-size", ["experiment", "experiment.yaml", "--set", "data.image_size=100000"], 2,
             "experiment.yaml: data.image_size must be <= 256 (got 100000)", _experiment(EXPERIMENT_TEXT)),
    BadInput("experiment-irm-with-one-colour-per-class", ["experiment", "experiment.yaml", "--set", "data.colours_per_class=1"], 2,
             "experiment.yaml: arms: irm needs data.colours_per_class >= 2, since its environments are a class's colours (got 1)",
             _experiment(EXPERIMENT_TEXT)),
    BadInput("experiment-no-digits-left-to-train", ["experiment", "experiment.yaml", "--set", "data.confounded_test_fraction=0.45",
             "--set", "data.causal_test_fraction=0.45"], 2, "experiment.yaml: data held-out fractions (confounded_test_fraction + "
             "causal_test_fraction + validation_fraction) must sum to < 0.9, leaving digits to train on (got 1.00)", _experiment(EXPERIMENT_TEXT)),
    BadInput("experiment-search-grid-invalid-point", ["experiment", "experiment.yaml", "--set", "search.grid.top_k=[1]"], 2,
             "experiment.yaml: search.grid: the strategy truncation=0.5, top_k=1, scale=0.5 over interventional is invalid: "
             "components_per_seed must be <= top_k (got 2 > 1)", _experiment(EXPERIMENT_TEXT)),
    BadInput("experiment-search-grid-empty", ["experiment", "experiment.yaml", "--set", "search.grid={{}}"], 2,
             "experiment.yaml: search.grid lists no values: give at least one of truncation, top_k, scale, offset_range",
             _experiment(EXPERIMENT_TEXT)),
    BadInput("experiment-search-without-original-arm", ["experiment", "experiment.yaml", "--set", "arms=[observational, interventional]"], 2,
             "experiment.yaml: search needs the original arm in arms: its first classifier is the search's feature extractor",
             _experiment(EXPERIMENT_TEXT)),
    BadInput("experiment-arm-repeated", ["experiment", "experiment.yaml", "--set", "arms=[original, irm, original]"], 2,
             "experiment.yaml: arms must not repeat an arm (got ['original', 'irm', 'original'])", _experiment(EXPERIMENT_TEXT)),
    BadInput("experiment-irm-weight-inf", ["experiment", "experiment.yaml", "--set", "irm.irm_weight=.inf"], 2,
             "experiment.yaml: irm.irm_weight must be a finite number (got inf)", _experiment(EXPERIMENT_TEXT)),
    BadInput("experiment-billion-laughs", ["experiment", "experiment.yaml"], 2, f"more than {MAX_VALUES} values",
             _experiment(EXPERIMENT_TEXT + LAUGHS[LAUGHS.index("  deepspeed:"):])),
    BadInput("experiment-given-a-job-config", ["experiment", "job.yaml"], 2,
             f"job.yaml: kind is required: it names the experiment (known kinds: {KNOWN_KINDS})", _job(JOB_TEXT)),
    BadInput("experiment-unknown-kind", ["experiment", "experiment.yaml", "--set", "kind=colored_mnist"], 2,
             f"experiment.yaml: kind must be one of the known kinds: {KNOWN_KINDS} (got 'colored_mnist')", _experiment(EXPERIMENT_TEXT)),
    BadInput("experiment-kind-not-a-name", ["experiment", "experiment.yaml", "--set", "kind=[colored_digits]"], 2,
             f"experiment.yaml: kind must be one of the known kinds: {KNOWN_KINDS} (got ['colored_digits'])", _experiment(EXPERIMENT_TEXT)),
    BadInput("experiment-colored-digits-given-a-job-config", ["experiment", "job.yaml"], 2,
             "job.yaml: train.num_classes must be 10, the digits' classes (got 1000)", _job("kind: colored_digits\n" + JOB_TEXT)),
]


@table(CASES)
def test_bad_config(case, tmp_path, monkeypatch, capsys):
    check_bad_input(case, tmp_path, monkeypatch, capsys)
