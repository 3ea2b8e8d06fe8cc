"""Checkpoints are data, never code: `genint eval` and a resume load them with weights_only=True,
only from inside the checkpoint directory, and only when genint's record vouches for every file.

Real DeepSpeed on CPU (small_cnn); a resume is ``trainers.checkpoint.restore``, the function every
worker calls at start.
"""

import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.bad_input_helpers import BadInput, check_bad_input
from tests.checkpoint_helpers import (
    EVAL_FLAGS,
    RunsCommand,
    copy_checkpoint,
    flip_one_byte,
    forge_record,
    latest_step_dir,
    plant_pickle,
    training,  # noqa: F401  (the fixture)
    write_images,
)
from cluster.cli import main
from trainers import checkpoint
from trainers.checkpoint_files import MODEL_STATES_NAME, RECORD_NAME, remove_checkpoints
from trainers.deepspeed_checkpoints import WeightsOnlyCheckpointEngine
from trainers.errors import TrainError
from trainers.models import load_classifier

OPTIMIZER_STATES = "zero_pp_rank_0_mp_rank_00_optim_states.pt"


def refused_resume(training, directory: Path) -> str:
    """The one-line TrainError a resume from ``directory`` raises."""
    with pytest.raises(TrainError) as refused:
        checkpoint.restore(training.engine, directory, training.sources)
    assert "\n" not in str(refused.value)
    return str(refused.value)


def eval_refuses(tmp_path, monkeypatch, capsys, message: str, setup) -> None:
    """`genint eval ckpt` fails with one line containing ``message`` and writes nothing."""
    def full_setup(root: Path) -> None:
        write_images(root / "images")
        setup(root)

    case = BadInput("eval", ["eval", "ckpt", "--data", "images", *EVAL_FLAGS], 1, message, full_setup)
    tmp_path.mkdir()
    check_bad_input(case, tmp_path, monkeypatch, capsys)


def test_a_genint_checkpoint_resumes_the_same_steps_and_evaluates(training, tmp_path, monkeypatch, capsys):
    directory = tmp_path / "checkpoints"
    assert type(training.engine.checkpoint_engine) is WeightsOnlyCheckpointEngine
    training.train_and_save(directory, steps=2)
    assert sorted(path.name for path in directory.glob("step_*")) == ["step_000000001", "step_000000002"]
    assert (directory / "latest").read_text() == "step_000000002"
    after = training.steps(3, 2)
    assert checkpoint.restore(training.engine, directory, training.sources) == 2
    assert training.steps(3, 2) == after  # weights, optimizer, data position and RNGs all resumed
    monkeypatch.chdir(tmp_path)
    write_images(tmp_path / "images")
    assert main(["eval", "checkpoints", "--data", "images", "--json", "out.json", *EVAL_FLAGS]) == 0
    assert '"top1"' in (tmp_path / "out.json").read_text()


def test_the_client_state_is_plain_data(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    torch.save(checkpoint.rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1))
    checkpoint.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected


@pytest.mark.parametrize("forged", [False, True], ids=["record-left", "record-forged"])
def test_a_planted_pickle_never_runs_on_resume_or_eval(training, tmp_path, monkeypatch, capsys, forged: bool):
    marker = tmp_path / "pwned"
    directory = copy_checkpoint(tmp_path / "checkpoints")
    step_dir = latest_step_dir(directory)
    plant_pickle(step_dir / MODEL_STATES_NAME, marker)
    if forged:
        # Even a record rewritten to match: the weights-only load refuses the object unloaded.
        forge_record(step_dir)
    expected = "pickles Python objects (posix.system)" if forged else "genint-checkpoint.json says"
    assert expected in refused_resume(training, directory) and MODEL_STATES_NAME in refused_resume(training, directory)
    assert not marker.exists()
    assert expected in str(pytest.raises(TrainError, load_classifier, directory, "small_cnn", 3).value)
    assert not marker.exists()
    eval_refuses(tmp_path / "cli", monkeypatch, capsys, expected,
                 lambda root: shutil.copytree(directory, root / "ckpt"))
    assert not marker.exists()
    # The same file unpickled unsafely does run it: the test plants a real attack.
    with open(step_dir / MODEL_STATES_NAME, "rb") as handle:
        torch.load(handle, weights_only=False)
    assert marker.exists()


def test_a_planted_pickle_in_the_optimizer_states_never_runs(training, tmp_path):
    marker = tmp_path / "pwned"
    directory = copy_checkpoint(tmp_path / "checkpoints")
    step_dir = latest_step_dir(directory)
    torch.save({"state": RunsCommand(marker)}, step_dir / OPTIMIZER_STATES)
    forge_record(step_dir)
    message = refused_resume(training, directory)
    assert "pickles Python objects (posix.system)" in message and OPTIMIZER_STATES in message
    assert not marker.exists()


def _outside_step(root: Path) -> Path:
    """A valid genint step directory outside the checkpoints directory (``root/elsewhere``)."""
    return latest_step_dir(root / "elsewhere")


LATEST_OUTSIDE = {
    "dotdot": (lambda d, root: (d / "latest").write_text("../elsewhere/step_000000002"), "names '../elsewhere/step_000000002'"),
    "absolute": (lambda d, root: (d / "latest").write_text(str(_outside_step(root))), "not a step directory genint writes"),
    "latest-symlink": (lambda d, root: ((d / "latest").unlink(), (d / "latest").symlink_to(root / "elsewhere" / "latest")),
                       "'latest' file is a symbolic link"),
    "step-symlink": (lambda d, root: (shutil.rmtree(d / "step_000000002"), (d / "step_000000002").symlink_to(_outside_step(root))),
                     "names step_000000002, which is not a directory inside it"),
    "file-symlink": (lambda d, root: ((d / "step_000000002" / OPTIMIZER_STATES).unlink(),
                                      (d / "step_000000002" / OPTIMIZER_STATES).symlink_to(_outside_step(root) / OPTIMIZER_STATES)),
                     f"{OPTIMIZER_STATES}: not a regular file"),
    "missing-step": (lambda d, root: shutil.rmtree(d / "step_000000002"), "names step_000000002, which is missing"),
}


def _tampered_beside_a_valid_one(root: Path, tamper) -> Path:
    """``root/ckpt`` changed by ``tamper`` to reach into ``root/elsewhere``, a valid genint checkpoint."""
    copy_checkpoint(root / "elsewhere")
    tamper(copy_checkpoint(root / "ckpt"), root)
    return root / "ckpt"


@pytest.mark.parametrize("case", list(LATEST_OUTSIDE))
def test_nothing_outside_the_checkpoint_directory_is_loaded(training, tmp_path, monkeypatch, capsys, case: str):
    tamper, message = LATEST_OUTSIDE[case]
    directory = _tampered_beside_a_valid_one(tmp_path / "resume", tamper)
    assert message in refused_resume(training, directory)
    assert message in str(pytest.raises(TrainError, load_classifier, directory, "small_cnn", 3).value)
    eval_refuses(tmp_path / "cli", monkeypatch, capsys, message, lambda root: _tampered_beside_a_valid_one(root, tamper))


TAMPERED = {
    "one-byte-changed": (lambda step: flip_one_byte(step / OPTIMIZER_STATES), f"{OPTIMIZER_STATES}: its sha256 differs"),
    "file-added": (lambda step: torch.save({}, step / "extra.pt"), "extra.pt: not in genint-checkpoint.json"),
    "file-removed": (lambda step: (step / OPTIMIZER_STATES).unlink(), f"{OPTIMIZER_STATES}: missing (listed in"),
    "file-truncated": (lambda step: (step / MODEL_STATES_NAME).write_bytes((step / MODEL_STATES_NAME).read_bytes()[:1000]),
                       f"{MODEL_STATES_NAME}: 1000 bytes, genint-checkpoint.json says"),
    "record-removed": (lambda step: (step / RECORD_NAME).unlink(), "no genint-checkpoint.json, so genint did not write it"),
    "record-garbage": (lambda step: (step / RECORD_NAME).write_text("{}"), "not a genint checkpoint record"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_changed_checkpoint_is_refused_at_resume(training, tmp_path, case: str):
    tamper, message = TAMPERED[case]
    directory = copy_checkpoint(tmp_path / "checkpoints")
    tamper(latest_step_dir(directory))
    assert message in refused_resume(training, directory)


def test_a_checkpoint_genint_did_not_write_is_refused(training, tmp_path):
    # A DeepSpeed checkpoint of the same model, written without genint's record.
    directory = tmp_path / "foreign"
    training.engine.save_checkpoint(str(directory), tag="step_000000007", client_state={"step": 7, "ranks": [{}]})
    assert "no genint-checkpoint.json, so genint did not write it" in refused_resume(training, directory)
    with pytest.raises(TrainError, match="no genint-checkpoint.json"):
        load_classifier(directory / "step_000000007", "small_cnn", 3)


def test_pruning_and_a_fresh_start_remove_only_what_genint_wrote(training, tmp_path):
    directory = tmp_path / "checkpoints"
    (directory / "step_000000000").mkdir(parents=True)  # the user's, named like a step
    (directory / "step_000000000" / "mine.txt").write_text("the user's own")
    (directory / "notes.txt").write_text("the user's own")
    for step in (1, 2, 3):
        training.steps(step, 1)
        checkpoint.save(training.engine, directory, step, training.sources, keep=1)
    assert sorted(path.name for path in directory.glob("step_*")) == ["step_000000000", "step_000000003"]
    remove_checkpoints(directory)
    assert sorted(path.name for path in directory.iterdir() if not path.name.endswith(".py")) == ["notes.txt", "step_000000000"]
    assert (directory / "step_000000000" / "mine.txt").read_text() == "the user's own"


def test_the_planted_object_is_a_real_pickle(tmp_path):
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(RunsCommand(marker)))
    assert marker.exists()
