"""GradCAM (Selvaraju et al.; seed 001's reproduction uses it to see what a digit classifier looks
at): a conv layer's activations weighted by the class score's mean gradient over each channel,
rectified, upsampled to the image and scaled to [0, 1]; and the IoU of thresholded maps with masks.
"""

import torch
import torch.nn.functional as F
from torch import nn

from trainers.errors import TrainError

# The last conv block of each architecture: torchvision's ResNets' layer4, the small CNN's third block.
DEFAULT_LAYERS = {"small_cnn": "features.4", "grid_cnn": "features.4"}
RESNET_DEFAULT_LAYER = "layer4"


def default_layer(arch: str) -> str:
    """The layer GradCAM reads when the config names none: the architecture's last conv block."""
    return DEFAULT_LAYERS.get(arch, RESNET_DEFAULT_LAYER)


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (as ``named_modules`` spells it).

    Raises:
        TrainError: no module has that name (the message lists the top-level ones).
    """
    modules = dict(model.named_modules())
    if not name or name not in modules:
        top = ", ".join(child for child, _ in model.named_children())
        raise TrainError(f"GradCAM layer {name!r}: the model has no module of that name (top-level modules: {top}; "
                         "nested ones as named_modules spells them, e.g. layer4.1 or features.4)")
    return modules[name]


def gradcam(model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """GradCAM maps of ``classes`` at ``layer``, at the inputs' size.

    Args:
        model: the classifier in eval mode.
        inputs: (B, 3, H, W) as the model takes them (prepared).
        classes: (B,) the class whose score each map explains.
        layer: a module of ``model`` whose output is a (B, C, h, w) activation.

    Returns:
        (B, H, W) float in [0, 1], each map scaled by its own maximum (all zero where the map is).
    """
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda module, args, output: seen.append(output))
    try:
        with torch.enable_grad():
            logits = model(inputs.detach().requires_grad_(True))
            activation = seen[0]
            if activation.dim() != 4:
                raise TrainError(f"GradCAM layer: its output has shape {tuple(activation.shape)}, not (batch, channels, h, w); "
                                 "name a convolutional block")
            score = logits.gather(1, classes.to(logits.device)[:, None]).sum()
            gradient, = torch.autograd.grad(score, activation)
    finally:
        handle.remove()
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    maps = F.relu((weights * activation).sum(dim=1, keepdim=True)).detach()
    maps = F.interpolate(maps, size=inputs.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = maps.flatten(1).max(dim=1).values.clamp_min(1e-12).view(-1, 1, 1)
    return (maps / peak).cpu()


def mask_iou(maps: torch.Tensor, masks: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Intersection over union of ``maps >= threshold`` with ``masks``: (B, H, W), (B, H, W) bool -> (B,).

    An image where both are empty scores 0 (nothing was found where nothing was to be found says
    nothing about where the model looks).
    """
    found = maps >= threshold
    intersection = (found & masks).flatten(1).sum(dim=1)
    union = (found | masks).flatten(1).sum(dim=1)
    return intersection.double() / union.clamp_min(1).double()
