"""The loop of the PyTorch style-transfer tutorial and the GenInt reference code, on torch.optim.LBFGS.

One ``torch.optim.LBFGS`` over all given pixels, a closure that clamps to [0, 1] and evaluates the
same objective as the batched path. With one image it is the baseline the batched optimiser is
benchmarked against and the yardstick its per-image results are tested against. With several
images it is the naive way to batch, which couples the images (see ``lbfgs.py``).
"""

import torch

from datagen.transfer.config import TransferConfig
from datagen.transfer.gatys import check_pairs, compute_targets, per_image_objective
from datagen.transfer.vgg import VggFeatures


def transfer_with_torch_lbfgs(
    content: torch.Tensor, style: torch.Tensor, steps: int, features: VggFeatures, config: TransferConfig
) -> torch.Tensor:
    """Optimise content images (N, 3, H, W) towards style images for ``steps`` closure evaluations.

    ``optimizer.step`` runs ``config.max_iter`` iterations per call (the last call fewer), so the
    images get exactly ``steps`` evaluations and updates, like a row of ``transfer_batch``.

    Returns:
        The transferred images (N, 3, H, W) in [0, 1], float32 on CPU.
    """
    check_pairs(content, style, [steps] * len(content))
    device = features.device
    content = content.to(device, torch.float32)
    targets = compute_targets(features, content, style.to(device, torch.float32), config)
    image = content.clone(memory_format=torch.contiguous_format).requires_grad_(True)  # LBFGS views grads flat
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
    return image.detach().clamp(0, 1).cpu()
