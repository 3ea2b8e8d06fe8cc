"""The Colored Digits experiment, shortened (one seed, few steps), through the real pipeline.

It asserts what a short run can honestly show: the confounding is real (the original-data
classifier is near perfect on the confounded test and far lower on the causal test), the
interventional CVAE draws backgrounds outside the training palette (measured on pixels), the
report is complete, and a rerun reuses every finished stage.
"""

import json
import math
from pathlib import Path

import pytest
from PIL import Image

from cluster.cli import main
from cluster.run_dirs import foreign_entries
from experiments.colored_digits.experiment import RUN_DIR_LAYOUT
from experiments.colored_digits.report import ARM_TITLES, SAMPLES_PNG
from experiments.harness.arms import ARM_DIR_LAYOUT
from experiments.harness.report import REPORT_JSON, REPORT_MD
from tests.experiment_helpers import set_flags

CONFIG = Path(__file__).parent.parent / "configs" / "experiments" / "colored-digits.yaml"
SHORT = [
    "seeds=[0]", "generator.epochs=15",
    "observational.seeds_per_class=40", "interventional.seeds_per_class=20",
    "search.samples_per_class=20", "train.max_steps=150", "train.checkpoint_every_steps=150", "train.report_every_steps=50",
    "explain.images=8", "explain.permutations=999", "explain.gradcam.images=8",
]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # four arms trained twice over (the rerun reuses them): minutes on 2 cores
def test_short_experiment_shows_the_confounding_and_new_colours_and_reuses_its_stages(tmp_path, capsys):
    output = tmp_path / "run"
    assert main(["experiment", str(CONFIG), *set_flags(output, SHORT)]) == 0
    printed = capsys.readouterr().out.replace("\n", "")  # rich folds a long path at the console's width
    assert "verdict:" in printed and str(output / REPORT_MD) in printed

    report = json.loads((output / REPORT_JSON).read_text())
    arms = {arm["arm"]: arm for arm in report["arms"]}
    assert set(arms) == set(ARM_TITLES)
    original = arms["original"]
    assert original["confounded_mean"] > 90.0, original
    assert original["causal_mean"] < original["confounded_mean"] - 40.0, original
    # validation is drawn like the causal test (backgrounds untied from the class), with its own held-out colours
    assert original["validation_mean"] < original["confounded_mean"] - 30.0 and len(original["validation_percent"]) == len(original["seeds"]), original

    colours = {stream["stream"]: stream for stream in report["streams"]}
    assert colours["original"]["new_share"] == 0.0
    assert colours["interventional"]["new_share"] > 0.1, colours

    search = report["strategy_search"]  # 2 truncations x 4 scales, scored on the validation stream
    assert search["real_stream"] == "validation" and len(search["strategies"]) == 8
    best = max(search["strategies"], key=lambda row: row["log_p_x_given_z"])
    assert best["chosen"] and best["label"] == search["chosen_label"] and (output / "strategy-search" / "bounds.png").is_file()
    correlation = {row["stream"]: row for row in report["correlation"]["streams"]}
    assert set(correlation) == {"original", "observational", "interventional"}
    assert correlation["original"]["multiple_of_chance"] > 2.0, correlation  # real data: the colour gives the label away

    explained = {arm["arm"]: arm for arm in report["explanations"]["arms"]}  # on the validation split, per arm
    assert set(explained) == set(ARM_TITLES)
    for arm in explained.values():
        assert math.isfinite(arm["gradient_mean"]) and arm["gradient_mean"] >= 0 and 0 <= arm["iou_mean"] <= 1
        assert all(0 < p <= 1 for p in arm["p_values"]) and Path(arm["gradcam_png"]).is_file()

    markdown = (output / REPORT_MD).read_text()
    assert all(title in markdown for title in ARM_TITLES.values()) and "Verdict" in markdown
    with Image.open(output / SAMPLES_PNG) as grid:  # three titled blocks of 2 rows x 10 classes
        assert grid.format == "PNG" and grid.width >= 10 * 32 and grid.height >= 3 * 2 * 32

    results = sorted(output.glob("arms/*/seed0/result.json"))
    assert len(results) == 4
    # `--fresh` deletes only a run directory holding nothing but the experiment's own layout.
    assert foreign_entries(output, RUN_DIR_LAYOUT) == []
    assert all(foreign_entries(result.parent, ARM_DIR_LAYOUT) == [] for result in results)
    written = {path: path.stat().st_mtime_ns for path in results}
    manifests = {path: path.read_bytes() for path in output.glob("shards/*/manifest*")}
    explained_at = (output / "explain" / "summary.json").stat().st_mtime_ns
    assert main(["experiment", str(CONFIG), *set_flags(output, SHORT)]) == 0  # everything is reused
    assert {path: path.stat().st_mtime_ns for path in results} == written
    assert {path: path.read_bytes() for path in output.glob("shards/*/manifest*")} == manifests
    assert (output / "explain" / "summary.json").stat().st_mtime_ns == explained_at  # the explanations too
