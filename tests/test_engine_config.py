"""The DeepSpeed config and schedule derived from TrainConfig; models built and loaded from weights."""

from pathlib import Path

import pytest
import torch
import torchvision

from conftest import write_stream
from trainers.config import TrainConfig
from trainers.deepspeed_config import deepspeed_config, merge, step_schedule
from trainers.errors import TrainError
from trainers.models import build_model, check_weights, load_classifier
from trainers.shard_sources import with_epoch_length


def config(**overrides) -> TrainConfig:
    base = {
        "model": "resnet18",
        "num_classes": 5,
        "streams": {"original": {"batch_size": 256}, "interventional": {"batch_size": 64, "loss_weight": 0.05},
                    "transferred": {"batch_size": 0}},
        "steps_per_epoch": 100,
    }
    return TrainConfig.model_validate({**base, **overrides})


def test_micro_batch_is_the_summed_stream_batches_and_precision_follows_the_device():
    cpu, cuda = deepspeed_config(config(), use_cuda=False), deepspeed_config(config(), use_cuda=True)
    assert cpu["train_micro_batch_size_per_gpu"] == 320 and cpu["gradient_accumulation_steps"] == 1
    assert cpu["bf16"] == {"enabled": False} and cuda["bf16"] == {"enabled": True}
    assert cpu["zero_optimization"] == {"stage": 1}
    assert cpu["optimizer"]["type"] == "SGD" and cpu["optimizer"]["params"]["lr"] == 0.1


def test_clipping_zero_stage_adamw_warmup_and_extra_keys_merged_last():
    derived = deepspeed_config(
        config(
            zero_stage=0,
            gradient_clipping=1.0,
            optimizer={"name": "adamw", "lr": 3e-4, "warmup_steps": 500},
            deepspeed={"zero_optimization": {"reduce_bucket_size": 1000}, "gradient_clipping": 2.0},
        ),
        use_cuda=False,
    )
    assert derived["zero_optimization"] == {"stage": 0, "reduce_bucket_size": 1000}
    assert derived["gradient_clipping"] == 2.0
    assert derived["optimizer"] == {"type": "AdamW", "params": {"lr": 3e-4, "weight_decay": 1e-4, "torch_adam": True}}
    assert derived["scheduler"]["type"] == "WarmupLR" and derived["scheduler"]["params"]["warmup_num_steps"] == 500
    assert step_schedule(config(optimizer={"name": "adamw"})) is None
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}, "d": 4}) == {"a": {"b": 1, "c": 3}, "d": 4}


def test_step_schedule_divides_lr_by_ten_every_n_epochs_or_steps():
    for overrides, step_size in (({"decay_every": 30}, 3000), ({"decay_every": 7, "decay_unit": "steps"}, 7)):
        make = step_schedule(config(optimizer=overrides))
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        scheduler = make(optimizer)
        lrs = []
        for _ in range(2 * step_size + 1):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        assert lrs[step_size - 1] == pytest.approx(0.1) and lrs[step_size] == pytest.approx(0.01)
        assert lrs[2 * step_size] == pytest.approx(0.001)


def test_epoch_schedule_without_steps_per_epoch_is_a_one_line_train_error():
    with pytest.raises(TrainError, match=r"^train.steps_per_epoch is required .*decay_unit: steps\)$"):
        step_schedule(config(steps_per_epoch=None))


def test_config_rejects_bad_values_naming_the_field():
    with pytest.raises(ValueError, match="zero_stage"):
        config(zero_stage=3)
    with pytest.raises(ValueError, match="decay_factor"):
        config(optimizer={"decay_factor": 2.0})
    with pytest.raises(ValueError, match="not_a_key"):
        config(objective={"not_a_key": 1})


def test_fine_tuning_from_a_local_state_dict_keeps_the_backbone(tmp_path: Path):
    source = torchvision.models.resnet18(num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "imagenet.pt")
    same = build_model("resnet18", 1000, str(tmp_path / "imagenet.pt"))
    assert all(torch.equal(a, b) for a, b in zip(same.state_dict().values(), source.state_dict().values()))
    fewer = build_model("resnet18", 5, str(tmp_path / "imagenet.pt"))
    assert fewer.fc.out_features == 5
    assert torch.equal(fewer.conv1.weight, source.conv1.weight) and torch.equal(fewer.layer4[1].bn2.bias, source.layer4[1].bn2.bias)


def test_bad_weights_are_one_line_train_errors(tmp_path: Path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    torch.save(torchvision.models.resnet34(num_classes=5).state_dict(), tmp_path / "resnet34.pt")
    cases = [
        (lambda: build_model("resnet18", 5, str(tmp_path / "junk.pt")), "cannot load a state_dict"),
        (lambda: build_model("resnet18", 5, str(tmp_path / "resnet34.pt")), "do not fit the model"),
        (lambda: build_model("resnet18", 5, "NO_SUCH_WEIGHTS"), "neither a local file nor torchvision weights"),
        (lambda: build_model("vgg11", 5), "is not supported"),
        (lambda: load_classifier(tmp_path / "resnet34.pt", "resnet34", 7), "do not fit the model"),
        (lambda: load_classifier(tmp_path, "resnet18", 5), "neither a checkpoint step nor a directory with a 'latest' file"),
    ]
    for call, message in cases:
        with pytest.raises(TrainError, match=message) as error:
            call()
        assert "\n" not in str(error.value)


def test_load_classifier_reads_a_state_dict_file_in_eval_mode(tmp_path: Path):
    trained = torchvision.models.resnet18(num_classes=4)
    torch.save(trained.state_dict(), tmp_path / "trained.pt")
    model = load_classifier(tmp_path / "trained.pt", "resnet18", 4)
    assert not model.training
    images = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(images), trained.eval()(images))


def test_small_cnn_builds_fine_tunes_and_loads_like_the_resnets(tmp_path: Path):
    model = build_model("small_cnn", 10)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    torch.save(model.state_dict(), tmp_path / "digits.pt")
    fewer = build_model("small_cnn", 4, str(tmp_path / "digits.pt"))  # a new head, the same features
    assert fewer.fc.out_features == 4 and torch.equal(fewer.features[0][0].weight, model.features[0][0].weight)
    loaded = load_classifier(tmp_path / "digits.pt", "small_cnn", 10)
    assert not loaded.training and torch.equal(loaded.fc.weight, model.fc.weight)
    with pytest.raises(TrainError, match="torchvision publishes no weights for small_cnn"):
        build_model("small_cnn", 10, "IMAGENET1K_V1")


def test_weights_are_checked_without_downloading(tmp_path: Path):
    check_weights("resnet152", "IMAGENET1K_V2")
    check_weights("resnet50", "ResNet50_Weights.IMAGENET1K_V1")
    torch.save({}, tmp_path / "local.pt")
    check_weights("resnet18", str(tmp_path / "local.pt"))
    with pytest.raises(TrainError, match="neither a local file nor torchvision weights of resnet18"):
        check_weights("resnet18", str(tmp_path / "missing.pt"))


def test_epoch_length_is_measured_from_the_original_streams_manifest(tmp_path: Path):
    write_stream(tmp_path / "original", 40, max_samples=7)
    measured = with_epoch_length(config(steps_per_epoch=None, workers=2, streams={"original": {"batch_size": 6}}), tmp_path)
    assert measured.steps_per_epoch == 40 // (6 * 2)
    step_schedule(measured)
    assert with_epoch_length(config(steps_per_epoch=5), tmp_path).steps_per_epoch == 5
