"""Classifiers: torchvision ResNets built from config, fine-tuned from weights, loaded for evaluation."""

from pathlib import Path

import torch
import torchvision
from torch import nn

from trainers.checkpoint_files import MODEL_STATES_NAME, checked_tag_dir
from trainers.config import ARCHITECTURES, TORCHVISION_ARCHITECTURES
from trainers.errors import TrainError
from trainers.site_heads import without_site_heads
from trainers.small_cnn import GridConvNet, SmallConvNet
from trainers.torch_files import load_plain


def _check_arch(arch: str) -> None:
    if arch not in ARCHITECTURES:
        raise TrainError(f"model {arch!r} is not supported (choose one of {', '.join(ARCHITECTURES)})")


def _state_dict(state: object, source: str) -> dict[str, torch.Tensor]:
    if not isinstance(state, dict) or not all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()):
        found = type(state).__name__ if not isinstance(state, dict) else "a dict with other keys or values"
        raise TrainError(f"weights {source}: expected a state_dict (a dict of named tensors), got {found}")
    return state


def _load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    return _state_dict(load_plain(path, "weights"), str(path))


def torchvision_weights(arch: str, name: str) -> torchvision.models.WeightsEnum:
    """Weights published by torchvision for ``arch`` (``IMAGENET1K_V1`` or ``ResNet50_Weights.IMAGENET1K_V2``);
    resolving the name downloads nothing."""
    if arch not in TORCHVISION_ARCHITECTURES:
        raise TrainError(f"weights {name!r}: not a local file, and torchvision publishes no weights for {arch}")
    qualified = name if "." in name else f"{torchvision.models.get_model_weights(arch).__name__}.{name}"
    try:
        return torchvision.models.get_weight(qualified)
    except (ValueError, KeyError, AttributeError):
        raise TrainError(f"weights {name!r}: neither a local file nor torchvision weights of {arch}") from None


def check_weights(arch: str, pretrained: str | None) -> None:
    """Raise TrainError now if ``build_model(arch, ..., pretrained)`` could not find or read its weights
    (whether they fit the model is checked when it is built)."""
    _check_arch(arch)
    if pretrained is None:
        return
    if Path(pretrained).is_file():
        _load_state_dict_file(Path(pretrained))
    else:
        torchvision_weights(arch, pretrained)


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str, new_head_ok: bool) -> None:
    """Load ``state`` into ``model`` strictly; with ``new_head_ok`` a classifier head of another
    class count is left freshly initialised (fine-tuning to another label set)."""
    if new_head_ok and state.get("fc.weight") is not None and state["fc.weight"].shape != model.fc.weight.shape:
        state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:
        detail = " ".join(str(error).split())[:200]
        raise TrainError(f"weights {source}: do not fit the model ({detail}); check the model and its class count") from None
    if new_head_ok:
        missing = [key for key in missing if not key.startswith("fc.")]
    if missing or unexpected:
        raise TrainError(
            f"weights {source}: do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]}); "
            "check the model name and the weights"
        )


def _new_model(arch: str, num_classes: int) -> nn.Module:
    _check_arch(arch)
    if arch == "small_cnn":
        return SmallConvNet(num_classes)
    if arch == "grid_cnn":
        return GridConvNet(num_classes)
    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)


def build_model(arch: str, num_classes: int, pretrained: str | None = None) -> nn.Module:
    """A torchvision ResNet (or the small CNN) with ``num_classes`` outputs.

    Args:
        arch: resnet18 .. resnet152, small_cnn or grid_cnn.
        num_classes: classifier outputs.
        pretrained: None (random init), a local state_dict file, or torchvision weights by name
            (downloaded by torchvision; the classifier head is replaced if the class count differs).
    """
    model = _new_model(arch, num_classes)
    if pretrained is not None:
        path = Path(pretrained)
        state = _load_state_dict_file(path) if path.is_file() else torchvision_weights(arch, pretrained).get_state_dict(progress=False)
        load_weights(model, state, pretrained, new_head_ok=True)
    return model


def _deepspeed_module_state(directory: Path) -> dict[str, torch.Tensor]:
    """The model weights of one checkpoint (a step directory) or of the newest in a checkpoints
    directory, after its record vouched for every file (see ``trainers.checkpoint_files``)."""
    states = checked_tag_dir(directory) / MODEL_STATES_NAME
    # ZeRO 0/1 keeps the full weights in the model-states file, beside the (plain) client state.
    content = load_plain(states, "checkpoint")
    if not isinstance(content, dict) or "module" not in content:
        raise TrainError(f"checkpoint {states}: holds no model weights ('module')")
    return _state_dict(content["module"], str(states))


def load_classifier(path_or_name: str | Path, arch: str, num_classes: int) -> nn.Module:
    """A trained classifier in eval mode, in float32 on CPU.

    Args:
        path_or_name: a genint checkpoint directory (DeepSpeed), a state_dict file, or torchvision
            weights by name.
        arch: resnet18 .. resnet152, small_cnn or grid_cnn.
        num_classes: classifier outputs the weights were trained for.
    """
    model = _new_model(arch, num_classes)
    path = Path(path_or_name)
    if path.is_dir():
        # The multi-task heads an objective trained beside the classifier are not part of it.
        state = {key: value.float() if value.is_floating_point() else value
                 for key, value in without_site_heads(_deepspeed_module_state(path)).items()}
    elif path.is_file():
        state = _load_state_dict_file(path)
    else:
        state = torchvision_weights(arch, str(path_or_name)).get_state_dict(progress=False)
    load_weights(model, state, str(path_or_name), new_head_ok=False)
    return model.eval()
