"""The one-image loop of the PyTorch style-transfer tutorial and the GenInt reference code.

One image, ``torch.optim.LBFGS`` over its pixels, a closure that clamps to [0, 1] and evaluates the
same objective as the batched path. It is the baseline the batched optimiser is benchmarked
against and the yardstick its per-image results are tested against.
"""

import torch

from datagen.transfer.config import TransferConfig
from datagen.transfer.gatys import check_pairs, compute_targets, per_image_objective
from datagen.transfer.vgg import VggFeatures


def transfer_one(
    content: torch.Tensor, style: torch.Tensor, steps: int, features: VggFeatures, config: TransferConfig
) -> torch.Tensor:
    """Optimise one content image (3, H, W) towards one style image for ``steps`` closure evaluations.

    ``optimizer.step`` runs ``config.max_iter`` iterations per call (the last call fewer), so the
    image gets exactly ``steps`` evaluations and updates, like one row of ``transfer_batch``.

    Returns:
        The transferred image (3, H, W) in [0, 1], float32 on CPU.
    """
    check_pairs(content[None], style[None], [steps])
    device = features.device
    content = content[None].to(device, torch.float32)
    targets = compute_targets(features, content, style[None].to(device, torch.float32), config)
    image = content.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([image], lr=config.lr, max_iter=config.max_iter, history_size=config.history_size)
    evaluations = 0

    def closure() -> torch.Tensor:
        nonlocal evaluations
        with torch.no_grad():
            image.clamp_(0, 1)
        optimizer.zero_grad()
        objective = per_image_objective(features, image, targets, config).sum()
        objective.backward()
        evaluations += 1
        return objective

    while evaluations < steps:
        optimizer.param_groups[0]["max_iter"] = min(config.max_iter, steps - evaluations)
        optimizer.step(closure)
    return image.detach().clamp(0, 1)[0].cpu()
