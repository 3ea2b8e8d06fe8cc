"""The causal-bound strategy search (cluster/strategy_search.py) with real tiny generators.

The held-out stream is planted: it holds exactly the images one strategy of the grid generates.
For that strategy every real image has an exact duplicate, which scores -H(p_i), the most any
generated image can (H(p, q) = H(p) + KL(p || q)), so the search must choose it, and its bound must
be minus the mean entropy of the real images' softmaxed features.
"""

from pathlib import Path

import pytest
import torch
import yaml

from cluster.cli import main
from cluster.config import load_config
from cluster.strategy_search import (
    BoundScorer,
    search_strategies,
    strategy_label,
    write_search_outputs,
)
from cluster.strategy_search_config import StrategySearchConfig
from datagen.strategy_config import StrategyConfig
from tests.datagen_helpers import save_tiny_biggan
from tests.strategy_helpers import (
    BASE_STRATEGY,
    CVAE_SIZE,
    job_dict,
    plant_stream,
    save_tiny_cvae,
    write_job,
)

GRID = {"truncation": [0.3, 1.0], "scale": [0.25, 1.0, 2.0]}
PLANTED = {"truncation": 1.0, "scale": 0.25}  # the fourth of six grid points, not the first or last
PER_CLASS = 6
# A random extractor's penultimate features are ~0.03: their softmax is nearly uniform and every
# strategy would score about -ln(128). The temperature scales them to a useful spread.
TEMPERATURE = 0.01


@pytest.fixture
def cvae_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    weights, directions = save_tiny_cvae(tmp_path)
    plant_stream(tmp_path, "cvae", weights, directions, {**BASE_STRATEGY, **PLANTED}, PER_CLASS)
    return write_job(tmp_path, job_dict("cvae", weights, directions, CVAE_SIZE, grid=GRID, samples_per_class=PER_CLASS,
                                        temperature=TEMPERATURE))


def _minus_mean_entropy(features: torch.Tensor) -> float:
    log_p = torch.log_softmax(features.double(), dim=1)
    return float((log_p.exp() * log_p).sum(1).mean())


def test_search_chooses_the_planted_strategy_of_a_cvae_grid(cvae_job: Path):
    job = load_config(cvae_job)
    result = search_strategies(job)
    labels = [score.label for score in result.scores]
    assert labels == ["t=0.3 k=2 s=0.25", "t=0.3 k=2 s=1", "t=0.3 k=2 s=2", "t=1 k=2 s=0.25", "t=1 k=2 s=1", "t=1 k=2 s=2"]
    assert result.chosen.label == "t=1 k=2 s=0.25"
    assert (result.real_images, result.classes) == (3 * PER_CLASS, [0, 1, 2])
    best_possible = _minus_mean_entropy(BoundScorer(job).real_features / TEMPERATURE)
    assert result.chosen.bound.mean == pytest.approx(best_possible, abs=1e-4)
    assert all(score.bound.mean < best_possible - 1e-3 for score in result.scores if score is not result.chosen)


def test_chosen_strategy_file_round_trips_into_a_datagen_config(cvae_job: Path, tmp_path: Path):
    job = load_config(cvae_job)
    result = search_strategies(job)
    outputs = write_search_outputs(result, tmp_path / "search")
    assert outputs.figure.read_bytes().startswith(b"\x89PNG")
    table = yaml.safe_load(outputs.table.read_text())  # JSON is YAML
    assert [entry["label"] for entry in table["strategies"] if entry["chosen"]] == ["t=1 k=2 s=0.25"]

    raw = yaml.safe_load(cvae_job.read_text())
    raw["datagen"]["strategy"] = {"file": str(outputs.chosen)}
    cvae_job.write_text(yaml.safe_dump(raw))
    named = load_config(cvae_job).datagen.strategy
    assert named.model_dump() == result.chosen.strategy.model_dump()
    assert strategy_label(named) == "t=1 k=2 s=0.25"
    # Fields beside `file` override the file's; the resolved config holds the values, not the file.
    raw["datagen"]["strategy"] = {"file": str(outputs.chosen), "seeds_per_class": 7}
    cvae_job.write_text(yaml.safe_dump(raw))
    overridden = load_config(cvae_job)
    assert (overridden.datagen.strategy.scale, overridden.datagen.strategy.seeds_per_class) == (0.25, 7)
    assert "file" not in overridden.model_dump(mode="json")["datagen"]["strategy"]
    # and the chosen strategy scores as it did in the search
    rescored = BoundScorer(overridden).score(overridden.datagen.strategy)
    assert rescored.bound.mean == pytest.approx(result.chosen.bound.mean, abs=1e-9)


def test_search_and_score_commands(cvae_job: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    assert main(["strategy", "search", str(cvae_job)]) == 0
    out = capsys.readouterr().out
    assert "chosen: t=1 k=2 s=0.25" in out and "-5.162" in out
    for name in ("bounds.json", "bounds.png", "chosen-strategy.yaml"):
        assert (tmp_path / "out" / "strategy-search" / name).is_file()
    chosen = StrategyConfig.model_validate({"file": tmp_path / "out" / "strategy-search" / "chosen-strategy.yaml"})
    assert (chosen.truncation, chosen.scale) == (1.0, 0.25)

    chosen_path = tmp_path / "out" / "strategy-search" / "chosen-strategy.yaml"
    assert main(["strategy", "score", str(cvae_job), "--set", f"datagen.strategy={{file: {chosen_path}}}"]) == 0
    line = capsys.readouterr().out
    assert "strategy t=1 k=2 s=0.25: log P(x|z) = " in line and f"{3 * PER_CLASS} images of 'validation'" in line


def test_search_on_a_tiny_biggan_chooses_the_planted_truncation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    weights, directions = save_tiny_biggan(tmp_path / "biggan", num_classes=3, image_size=16)
    strategy = {**BASE_STRATEGY, "ranges": "spread"}
    plant_stream(tmp_path, "biggan", weights, directions, {**strategy, "truncation": 0.5}, 4)
    job = job_dict("biggan", weights, directions, 16, grid={"truncation": [1.0, 0.5, 0.2]}, samples_per_class=4,
                   temperature=TEMPERATURE)
    job["datagen"]["generator"]["precision"] = "fp32"
    result = search_strategies(load_config(write_job(tmp_path, job)))
    assert [score.label for score in result.scores] == ["t=1 k=2 s=1", "t=0.5 k=2 s=1", "t=0.2 k=2 s=1"]
    assert result.chosen.label == "t=0.5 k=2 s=1"


def test_the_experiment_can_pass_its_own_search_settings(cvae_job: Path):
    job = load_config(cvae_job)
    settings = StrategySearchConfig.model_validate(
        {**job.strategy_search.model_dump(), "grid": {"scale": [2.0, 0.25]}, "estimate": "sum"})
    result = search_strategies(job.model_copy(update={"strategy_search": None}), settings)
    assert [score.label for score in result.scores] == ["t=1 k=2 s=2", "t=1 k=2 s=0.25"]
    assert result.settings["estimate"] == "sum"
    # exact sum >= its largest term
    nearest = search_strategies(job, settings.model_copy(update={"estimate": "nearest"}))
    assert all(exact.bound.mean >= near.bound.mean for exact, near in zip(result.scores, nearest.scores))


def test_real_images_are_limited_per_class_and_to_datagen_classes(cvae_job: Path):
    job = load_config(cvae_job, ["strategy_search.real_per_class=2", "datagen.classes=[0, 2]"])
    scorer = BoundScorer(job)
    assert sorted(scorer.real_labels.tolist()) == [0, 0, 2, 2]
    assert scorer.classes == [0, 2]
    assert scorer.score(job.datagen.strategy).bound.queries == 4
