"""The bad-input suite, weights part: `genint eval` on checkpoints and state_dict files that are
empty, random, pickles, of another model or tampered with; and the weights a job config names
(train.pretrained, BigGAN, CVAE, CGN and VGG-19 weights) for `train`, `directions` and `datagen`. Each
row: its exit code, one line, no traceback, nothing written (see tests/bad_input_helpers.py); a
planted pickle would write ``{tmp}/pwned``, which the runner would see."""

import os
import pickle
import shutil
from pathlib import Path

import torch
import torchvision
import yaml

from datagen.generators.cvae import WEIGHTS_NAME as CVAE_WEIGHTS_NAME
from datagen.generators.cvae import ConditionalVae, CvaeGenerator
from datagen.generators.cvae_config import CvaeArchitecture
from tests.bad_input_helpers import BadInput, check_bad_input, table
from tests.checkpoint_helpers import (
    EVAL_FLAGS,
    RunsCommand,
    copy_checkpoint,
    flip_one_byte,
    forge_record,
    latest_step_dir,
    plant_pickle,
    write_images,
)
from tests.datagen_helpers import save_tiny_biggan
from tests.store_helpers import make_store, save_small_classifier
from trainers.checkpoint_files import MODEL_STATES_NAME, RECORD_NAME
from trainers.models import build_model

EVAL = ["eval", "ckpt", "--data", "images", *EVAL_FLAGS]
OPTIMIZER_STATES = "zero_pp_rank_0_mp_rank_00_optim_states.pt"


def _eval_with(make):
    """A setup: the image folder, and ``make(tmp / "ckpt")`` putting a weights file or checkpoint there."""
    def setup(root: Path) -> None:
        write_images(root / "images")
        make(root / "ckpt")
    return setup


def _bytes(data: bytes):
    return lambda path: path.write_bytes(data)


def _command_pickle(path: Path) -> None:
    """A plain pickle (protocol 2, as torch writes) of a dict whose unpickling runs `touch pwned`."""
    path.write_bytes(pickle.dumps({"conv.weight": RunsCommand(path.parent / "pwned")}, protocol=2))


def _torch_saved(make_object):
    return lambda path: torch.save(make_object(), path)


def _truncated_state_dict(path: Path) -> None:
    save_small_classifier(path)
    path.write_bytes(path.read_bytes()[:2000])


def _checkpoint(*tamper):
    """A genint checkpoint at the path, then each ``tamper(checkpoints_dir)``."""
    def make(path: Path) -> None:
        copy_checkpoint(path)
        for each in tamper:
            each(path)
    return make


def _latest(text: str):
    return lambda directory: (directory / "latest").write_text(text)


def _in_step(edit):
    return lambda directory: edit(latest_step_dir(directory))


def _planted_and_forged(step: Path) -> None:
    plant_pickle(step / MODEL_STATES_NAME, step.parent.parent / "pwned")
    forge_record(step)


def _fifo_states(step: Path) -> None:
    (step / MODEL_STATES_NAME).unlink()
    os.mkfifo(step / MODEL_STATES_NAME)


def _job(train: dict | None = None, datagen: dict | None = None):
    """A setup writing job.yaml (output under out/, a committed original stream under store/)."""
    def setup(root: Path) -> None:
        make_store(root)
        job = {"name": "job", "output_dir": "out", "shards": {"root": "store"},
               "train": {"model": "small_cnn", "num_classes": 3, "streams": {"original": {"batch_size": 2}}, **(train or {})},
               "datagen": {"device": "cpu", **(datagen or {})}}
        (root / "job.yaml").write_text(yaml.safe_dump(job))
    return setup


def _both(*setups):
    def setup(root: Path) -> None:
        for each in setups:
            each(root)
    return setup


def _biggan_weights(replace):
    """A setup: a tiny BigGAN directory at tmp/biggan (its directions at tmp/directions.npz) whose
    weights file is then ``replace``d."""
    def setup(root: Path) -> None:
        weights, directions = save_tiny_biggan(root / "tiny")
        shutil.copytree(weights, root / "biggan")
        shutil.copy(directions, root / "directions.npz")
        shutil.rmtree(root / "tiny")
        replace(root / "biggan" / "pytorch_model.bin")
    return setup


def _cvae_weights(replace):
    """A setup: a CVAE directory at tmp/cvae (a valid config.json) whose weights file is ``replace``d."""
    def setup(root: Path) -> None:
        CvaeGenerator(ConditionalVae(CvaeArchitecture(num_classes=3, image_size=8, hidden_dim=16, latent_dim=3))).save(root / "cvae")
        replace(root / "cvae" / CVAE_WEIGHTS_NAME)
    return setup


CASES = [
    # state_dict files given to eval
    BadInput("eval-weights-empty", EVAL, 1, "weights ckpt: cannot load a state_dict (the file is empty)", _eval_with(_bytes(b""))),
    BadInput("eval-weights-random-bytes", EVAL, 1, "weights ckpt: cannot load a state_dict (not a torch file",
             _eval_with(_bytes(bytes(range(256)) * 8))),
    BadInput("eval-weights-text", EVAL, 1, "weights ckpt: cannot load a state_dict (not a torch file",
             _eval_with(_bytes(b"these are not weights\n"))),
    BadInput("eval-weights-truncated", EVAL, 1, "weights ckpt: cannot load a state_dict (not a torch file",
             _eval_with(_truncated_state_dict)),
    BadInput("eval-weights-command-pickle", EVAL, 1, "weights ckpt: it pickles Python objects (posix.system), refused unloaded",
             _eval_with(_command_pickle)),
    BadInput("eval-weights-whole-pickled-model", EVAL, 1, "it pickles Python objects (trainers.small_cnn.SmallConvNet)",
             _eval_with(_torch_saved(lambda: build_model("small_cnn", 3)))),
    BadInput("eval-weights-a-list", EVAL, 1, "weights ckpt: expected a state_dict (a dict of named tensors), got list",
             _eval_with(_torch_saved(lambda: [torch.zeros(3)]))),
    BadInput("eval-weights-other-architecture", EVAL, 1, "weights ckpt: do not fit the model",
             _eval_with(_torch_saved(lambda: torchvision.models.resnet18(num_classes=3).state_dict()))),
    BadInput("eval-weights-other-class-count", EVAL, 1, "size mismatch for fc.weight",
             _eval_with(_torch_saved(lambda: build_model("small_cnn", 10).state_dict()))),
    BadInput("eval-weights-fifo", EVAL, 1, "weights 'ckpt': not a local file, and torchvision publishes no weights for small_cnn",
             _eval_with(os.mkfifo)),
    BadInput("eval-weights-empty-directory", EVAL, 1, "checkpoint ckpt: neither a checkpoint step nor a directory with a 'latest' file",
             _eval_with(Path.mkdir)),
    # checkpoint directories given to eval
    BadInput("eval-checkpoint-latest-names-a-missing-step", EVAL, 1, "ckpt/latest: names step_000000009, which is missing",
             _eval_with(_checkpoint(_latest("step_000000009")))),
    BadInput("eval-checkpoint-latest-dotdot", EVAL, 1, "ckpt/latest: names '../../etc', not a step directory genint writes",
             _eval_with(_checkpoint(_latest("../../etc")))),
    BadInput("eval-checkpoint-latest-empty", EVAL, 1, "ckpt/latest: names '', not a step directory genint writes",
             _eval_with(_checkpoint(_latest("")))),
    BadInput("eval-checkpoint-latest-symlink", EVAL, 1, "ckpt/latest: 'latest' file is a symbolic link",
             _eval_with(_checkpoint(lambda d: ((d / "latest").unlink(), (d / "latest").symlink_to("/etc/hostname"))))),
    BadInput("eval-checkpoint-latest-directory", EVAL, 1, "ckpt/latest: 'latest' file is a directory",
             _eval_with(_checkpoint(lambda d: ((d / "latest").unlink(), (d / "latest").mkdir())))),
    BadInput("eval-checkpoint-no-record", EVAL, 1, "no genint-checkpoint.json, so genint did not write it",
             _eval_with(_checkpoint(_in_step(lambda step: (step / RECORD_NAME).unlink())))),
    BadInput("eval-checkpoint-record-not-json", EVAL, 1, "genint-checkpoint.json: not a genint checkpoint record",
             _eval_with(_checkpoint(_in_step(lambda step: (step / RECORD_NAME).write_text("{files")))),),
    BadInput("eval-checkpoint-one-byte-changed", EVAL, 1, f"{MODEL_STATES_NAME}: its sha256 differs from genint-checkpoint.json",
             _eval_with(_checkpoint(_in_step(lambda step: flip_one_byte(step / MODEL_STATES_NAME))))),
    BadInput("eval-checkpoint-file-added", EVAL, 1, "notes.txt: not in genint-checkpoint.json (a file genint did not write)",
             _eval_with(_checkpoint(_in_step(lambda step: (step / "notes.txt").write_text("hi"))))),
    BadInput("eval-checkpoint-file-removed", EVAL, 1, f"{OPTIMIZER_STATES}: missing (listed in genint-checkpoint.json)",
             _eval_with(_checkpoint(_in_step(lambda step: (step / OPTIMIZER_STATES).unlink())))),
    BadInput("eval-checkpoint-planted-pickle-forged-record", EVAL, 1,
             f"{MODEL_STATES_NAME}: it pickles Python objects (posix.system), refused unloaded",
             _eval_with(_checkpoint(_in_step(_planted_and_forged)))),
    BadInput("eval-checkpoint-states-is-a-fifo", EVAL, 1, f"{MODEL_STATES_NAME}: not a regular file",
             _eval_with(_checkpoint(_in_step(_fifo_states)))),
    BadInput("eval-checkpoint-step-of-another-model", [*EVAL[:-1], "10"], 1, "do not fit the model",
             _eval_with(_checkpoint())),
    # --config names the model the weights must fit
    BadInput("eval-config-other-class-count", ["eval", "ckpt", "--data", "images", "--suite", "imagefolder", "--config", "job.yaml"],
             1, "weights ckpt: do not fit the model", _both(_eval_with(save_small_classifier), _job({"num_classes": 7}))),
    # weights a job config names
    BadInput("train-pretrained-command-pickle", ["train", "job.yaml"], 1, "weights w.pt: it pickles Python objects (posix.system)",
             _both(_job({"pretrained": "w.pt"}), lambda root: _command_pickle(root / "w.pt"))),
    BadInput("train-pretrained-empty", ["train", "job.yaml"], 1, "weights w.pt: cannot load a state_dict (the file is empty)",
             _both(_job({"pretrained": "w.pt"}), lambda root: (root / "w.pt").write_bytes(b""))),
    BadInput("directions-biggan-weights-pickle", ["directions", "job.yaml"], 1,
             "pytorch_model.bin: cannot read BigGAN weights (it pickles Python objects (posix.system)",
             _both(_job(datagen={"generator": {"weights": "biggan"}}), _biggan_weights(_command_pickle))),
    BadInput("directions-biggan-weights-garbage", ["directions", "job.yaml"], 1,
             "pytorch_model.bin: cannot read BigGAN weights (not a loadable state_dict",
             _both(_job(datagen={"generator": {"weights": "biggan"}}), _biggan_weights(_bytes(b"\x00" * 4096)))),
    BadInput("directions-biggan-config-not-biggan", ["directions", "job.yaml"], 1, "config.json: not a BigGAN config",
             _both(_job(datagen={"generator": {"weights": "biggan"}}),
                   _biggan_weights(lambda weights: (weights.parent / "config.json").write_text("[1, 2]")))),
    BadInput("directions-cvae-weights-pickle", ["directions", "job.yaml"], 1,
             f"{CVAE_WEIGHTS_NAME}: cannot read CVAE weights (it pickles Python objects (posix.system)",
             _both(_job(datagen={"generator": {"kind": "cvae", "weights": "cvae"}}), _cvae_weights(_command_pickle))),
    BadInput("directions-cvae-weights-empty", ["directions", "job.yaml"], 1, "cannot read CVAE weights (the file is empty)",
             _both(_job(datagen={"generator": {"kind": "cvae", "weights": "cvae"}}), _cvae_weights(_bytes(b"")))),
    BadInput("datagen-cgn-weights-missing", ["datagen", "job.yaml"], 1, "cgn: CGN directory not found",
             _job(datagen={"generator": {"kind": "cgn", "weights": "cgn"}, "strategy": {"kind": "counterfactual"}})),
    BadInput("generator-train-cgn-texture-weights-missing", ["generator", "train", "job.yaml"], 1,
             "VGG-19 weights 'vgg.pt': no such file",
             _job(datagen={"generator": {"kind": "cgn", "weights": "cgn", "cgn_train": {
                 "model": {"num_classes": 3, "image_size": 8, "noise_dim": 4, "width": 4}, "epochs": 1, "edge_px": 1,
                 "texture_weight": 1.0, "texture_features": "vgg.pt"}}, "strategy": {"kind": "counterfactual"}})),
    BadInput("datagen-vgg-weights-pickle", ["datagen", "job.yaml"], 1,
             "vgg.pt: cannot read VGG-19 weights (it pickles Python objects (posix.system)",
             _both(_job(datagen={"generator": {"weights": "biggan"}, "directions": {"path": "directions.npz"},
                                 "strategy": {"kind": "intervention", "top_k": 4, "components_per_seed": 2},
                                 "transfer": {"actors": 1, "gatys": {"vgg_weights": "vgg.pt"}}}),
                   _biggan_weights(lambda weights: None), lambda root: _command_pickle(root / "vgg.pt"))),
]


@table(CASES)
def test_bad_input(case, tmp_path, monkeypatch, capsys):
    check_bad_input(case, tmp_path, monkeypatch, capsys)
