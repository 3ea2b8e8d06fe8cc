"""The bad-input suite, strategy part: `genint strategy score | search` with a missing or bad
``strategy_search`` section (grid, feature extractor, real stream, output directory), missing
directions, and ``datagen.strategy: {file: ...}`` naming a missing or bad strategy file. Each row:
its exit code, one line, no traceback, nothing written (see tests/bad_input_helpers.py).
"""

from pathlib import Path

import yaml

from tests.bad_input_helpers import BadInput, check_bad_input, table
from tests.strategy_helpers import BASE_STRATEGY, CVAE_SIZE, job_dict, plant_stream, save_tiny_cvae, write_job

SCORE, SEARCH, CHECK = ["strategy", "score", "job.yaml"], ["strategy", "search", "job.yaml"], ["config", "check", "job.yaml"]
GRID = {"scale": [0.5, 1.0]}


def _config(edit=None, **search):
    """A setup writing job.yaml (its generator files need not exist: config checks come first), then ``edit(job)``."""
    def setup(root: Path) -> None:
        job = job_dict("cvae", root / "cvae", root / "directions.npz", CVAE_SIZE, **search)
        if edit is not None:
            edit(job)
        write_job(root, job)
    return setup


def _real(edit=None, plant: bool = True, **search):
    """A setup with a real tiny CVAE, its directions and (``plant``) a held-out stream, then ``edit(root, job)``."""
    def setup(root: Path) -> None:
        weights, directions = save_tiny_cvae(root)
        if plant:
            plant_stream(root, "cvae", weights, directions, BASE_STRATEGY, 2)
        job = job_dict("cvae", weights, directions, CVAE_SIZE, samples_per_class=2, **search)
        if edit is not None:
            edit(root, job)
        write_job(root, job)
    return setup


def _without(key: str):
    return lambda job: job["strategy_search"].pop(key) if key in job["strategy_search"] else job.pop(key)


def _strategy(**fields):
    return lambda job: job["datagen"]["strategy"].update(fields)


def _strategy_file(text: str | None, name: str = "s.yaml"):
    """A setup: job.yaml whose datagen.strategy is {file: NAME}, and NAME holding ``text`` (None: no file)."""
    def edit(job: dict) -> None:
        job["datagen"]["strategy"] = {"file": name}
    def setup(root: Path) -> None:
        _config(edit)(root)
        if text is not None:
            (root / name).write_text(text)
    return setup


def _drop_directions(root: Path, job: dict) -> None:
    (root / "directions.npz").unlink()


CASES = [
    # the section and its grid
    BadInput("strategy-no-section", SCORE, 2, "job.yaml: strategy_search is not set", _config(_without("strategy_search"))),
    BadInput("strategy-no-grid", SEARCH, 2, "job.yaml: strategy_search.grid is not set: search needs the strategies", _config()),
    BadInput("strategy-grid-lists-nothing", SEARCH, 2, "job.yaml: strategy_search.grid lists no values", _config(grid={})),
    BadInput("strategy-grid-empty-axis", SEARCH, 2, "job.yaml: strategy_search.grid truncation lists no values (got [])",
             _config(grid={"truncation": []})),
    BadInput("strategy-grid-truncation-above-one", SEARCH, 2, "job.yaml: strategy_search.grid.truncation.1 must be <= 1.0 (got 1.5)",
             _config(grid={"truncation": [0.5, 1.5]})),
    BadInput("strategy-grid-repeated-value", SEARCH, 2, "strategy_search.grid top_k lists a value twice (got [1, 1])",
             _config(grid={"top_k": [1, 1]})),
    BadInput("strategy-grid-scale-and-offsets", SEARCH, 2, "strategy_search.grid give scale or offset_range, not both",
             _config(grid={"scale": [1.0], "offset_range": [[-1, 1]]})),
    BadInput("strategy-grid-offsets-reversed", SEARCH, 2, "offset_range must list [low, high] intervals (got [5.0, -5.0])",
             _config(grid={"offset_range": [[5, -5]]})),
    BadInput("strategy-grid-too-large", SEARCH, 2, "strategy_search.grid has 1200 strategies, more than 1000",
             _config(grid={"truncation": [round(0.02 * (i + 1), 2) for i in range(40)], "top_k": list(range(1, 31))})),
    BadInput("strategy-grid-point-invalid", SEARCH, 2, "job.yaml: strategy_search.grid: the strategy top_k=1 over datagen.strategy "
             "is invalid: components_per_seed must be <= top_k (got 2 > 1)", _config(_strategy(components_per_seed=2), grid={"top_k": [1, 2]})),
    BadInput("strategy-grid-on-observational", SEARCH, 2, "strategy_search.grid varies scale, but datagen.strategy is observational",
             _config(_strategy(kind="observational"), grid=GRID)),
    BadInput("strategy-output-dir-is-a-file", SEARCH, 2, "strategy_search.output_dir job.yaml: is a file, not a directory",
             _config(grid=GRID, output_dir="job.yaml")),
    # the feature extractor
    BadInput("strategy-no-feature-extractor", SCORE, 2, "job.yaml: strategy_search.feature_extractor is required",
             _config(_without("feature_extractor"))),
    BadInput("strategy-feature-extractor-missing", SCORE, 1, "strategy_search.feature_extractor (small_cnn, 3 classes): weights "
             "'nothere.pt': not a local file, and torchvision publishes no weights for small_cnn",
             _config(feature_extractor={"arch": "small_cnn", "weights": "nothere.pt"})),
    BadInput("strategy-feature-extractor-other-classes", SEARCH, 1, "strategy_search.feature_extractor (small_cnn, 5 classes): weights "
             "clf.pt: do not fit the model", _config(grid=GRID, feature_extractor={"arch": "small_cnn", "weights": "clf.pt", "num_classes": 5})),
    # the data and the directions
    BadInput("strategy-real-stream-missing", SCORE, 1, "strategy_search.real_stream 'heldout': no committed images in store/heldout",
             _real(real_stream="heldout")),
    BadInput("strategy-directions-missing", SEARCH, 1, "directions.npz: file not found (compute it with `genint directions CONFIG`)",
             _real(_drop_directions, grid=GRID)),
    BadInput("strategy-grid-top-k-beyond-directions", SEARCH, 1, "strategy_search.grid, strategy t=1 k=5 s=1: strategy top_k=5 but "
             "the directions file has 3 components",
             _real(grid={"top_k": [2, 5]})),
    # datagen.strategy: {file: ...}
    BadInput("strategy-file-missing", CHECK, 2, "job.yaml: datagen.strategy file s.yaml: not found", _strategy_file(None)),
    BadInput("strategy-file-invalid", SCORE, 2, "job.yaml: datagen.strategy file s.yaml: components_per_seed must be <= top_k (got 3 > 1)",
             _strategy_file("kind: intervention\ntop_k: 1\ncomponents_per_seed: 3\n")),
    BadInput("strategy-file-unknown-key", CHECK, 2, "job.yaml: datagen.strategy file s.yaml: colour is not a known key",
             _strategy_file("truncation: 0.5\ncolour: red\n")),
    BadInput("strategy-file-not-a-mapping", CHECK, 2, "datagen.strategy file s.yaml: a strategy file must be a YAML mapping (got list)",
             _strategy_file("- truncation: 0.5\n")),
    BadInput("strategy-file-not-yaml", CHECK, 2, "datagen.strategy file s.yaml: not a YAML strategy", _strategy_file("truncation: [0.5\n")),
    BadInput("strategy-file-names-a-file", CHECK, 2, "datagen.strategy file s.yaml: names another strategy file",
             _strategy_file("file: other.yaml\n")),
    BadInput("strategy-file-is-a-directory", CHECK, 2, "datagen.strategy file .: not a regular file", _strategy_file(None, ".")),
]


@table(CASES)
def test_bad_strategy_input(case: BadInput, tmp_path, monkeypatch, capsys):
    check_bad_input(case, tmp_path, monkeypatch, capsys)


def test_the_strategy_rows_start_from_valid_configs(tmp_path, monkeypatch, capsys):
    """The config the rows break is itself accepted: each row fails for its own reason."""
    monkeypatch.chdir(tmp_path)
    _config(grid=GRID)(tmp_path)
    from cluster.config import load_config
    assert load_config(tmp_path / "job.yaml").strategy_search.grid.scale == [0.5, 1.0]
    assert yaml.safe_load((tmp_path / "job.yaml").read_text())["datagen"]["strategy"] == BASE_STRATEGY
