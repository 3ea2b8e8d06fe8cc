"""L-BFGS over a batch of independent problems, row for row what torch.optim.LBFGS does for one.

torch.optim.LBFGS flattens all parameters into one vector, so handing it a batch of images couples
them: the two-loop recursion's inner products, the first step's 1/|g|_1 scaling and the stopping
tests all sum over the batch, and one image's curvature bends another's path. Here every reduction
is per row (one row = one image), so row i takes exactly the steps it would take alone. The update
rule is torch's without line search: first direction -g with step lr * min(1, 1/|g|_1); later the
two-loop recursion over the newest ``history_size`` accepted (s, y) pairs (accepted when
y.s > 1e-10), initial Hessian scale y.s / y.y, step lr.

Rows differ in which pairs they accept, so the history is one list of (s, y) for all rows with a
per-row validity mask; a rejected pair contributes exactly zero to that row's recursion. No value is
read back to the host inside ``step``, so on a GPU the loop never waits for the device.
"""

from dataclasses import dataclass

import torch

# torch.optim.LBFGS defaults.
TOLERANCE_GRAD = 1e-7
TOLERANCE_CHANGE = 1e-9
_CURVATURE_MIN = 1e-10


@dataclass
class _Pair:
    step: torch.Tensor  # s = x_{k+1} - x_k, (B, D)
    grad_change: torch.Tensor  # y = g_{k+1} - g_k, (B, D)
    rho: torch.Tensor  # 1 / y.s where valid, else 0, (B,)
    valid: torch.Tensor  # (B,) bool


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vecdot(a, b)


class BatchedLBFGS:
    """Per-row L-BFGS state for a batch of B flattened problems of D variables."""

    def __init__(self, batch: int, lr: float, history_size: int, device: torch.device):
        self.lr = lr
        self.history_size = history_size
        self.iteration = 0
        self.history: list[_Pair] = []  # oldest first
        self.accepted = torch.zeros(batch, dtype=torch.long, device=device)
        self.hessian_scale = torch.ones(batch, device=device)
        # A row freezes where torch's step() would return without moving: gradient below tolerance
        # or no descent direction. torch's state does not change then, so it never moves again.
        self.frozen = torch.zeros(batch, dtype=torch.bool, device=device)
        self.direction: torch.Tensor | None = None
        self.step_length: torch.Tensor | None = None
        self.previous_grad: torch.Tensor | None = None

    @torch.no_grad()
    def step(self, x: torch.Tensor, grad: torch.Tensor) -> None:
        """Move each row of ``x`` (B, D) in place along its L-BFGS direction, given the gradient at ``x``."""
        self.frozen |= grad.abs().amax(dim=1) <= TOLERANCE_GRAD
        if self.iteration == 0:
            direction = -grad
            step_length = self.lr * torch.clamp(1.0 / grad.abs().sum(dim=1), max=1.0)
        else:
            self._remember(grad)
            direction = self._two_loop(grad)
            step_length = torch.full_like(self.hessian_scale, self.lr)
        self.frozen |= _dot(grad, direction) > -TOLERANCE_CHANGE
        x.add_(direction * torch.where(self.frozen, 0.0, step_length).unsqueeze(1))
        self.previous_grad = grad.clone()
        self.direction, self.step_length = direction, step_length
        self.iteration += 1

    def _remember(self, grad: torch.Tensor) -> None:
        grad_change = grad - self.previous_grad
        step = self.direction * self.step_length.unsqueeze(1)
        curvature = _dot(grad_change, step)
        valid = curvature > _CURVATURE_MIN
        # where() picks per element, so the inf/nan of rejected rows never reaches a kept value.
        rho = torch.where(valid, 1.0 / curvature, 0.0)
        self.hessian_scale = torch.where(valid, curvature / _dot(grad_change, grad_change), self.hessian_scale)
        self.history.append(_Pair(step, grad_change, rho, valid))
        self.accepted += valid
        if len(self.history) > self.history_size:  # only then can a row hold more than history_size
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        """Drop each over-full row's oldest valid pair, and pairs no row uses any more."""
        over = self.accepted > self.history_size
        for pair in self.history:
            drop = pair.valid & over
            pair.valid = pair.valid & ~drop
            pair.rho = torch.where(drop, 0.0, pair.rho)
            over &= ~drop
        self.accepted = torch.clamp(self.accepted, max=self.history_size)
        while self.history and not bool(self.history[0].valid.any()):
            self.history.pop(0)

    def _two_loop(self, grad: torch.Tensor) -> torch.Tensor:
        q = -grad
        alphas = []
        for pair in reversed(self.history):
            alpha = _dot(pair.step, q) * pair.rho
            q = q - pair.grad_change * alpha.unsqueeze(1)
            alphas.append(alpha)
        r = q * self.hessian_scale.unsqueeze(1)
        for pair, alpha in zip(self.history, reversed(alphas)):
            beta = _dot(pair.grad_change, r) * pair.rho
            r = r + pair.step * (alpha - beta).unsqueeze(1)
        return r

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (indices into the current batch), in that order."""
        for pair in self.history:
            pair.step, pair.grad_change = pair.step[rows], pair.grad_change[rows]
            pair.rho, pair.valid = pair.rho[rows], pair.valid[rows]
        self.accepted, self.hessian_scale, self.frozen = self.accepted[rows], self.hessian_scale[rows], self.frozen[rows]
        if self.iteration:
            self.direction, self.step_length = self.direction[rows], self.step_length[rows]
            self.previous_grad = self.previous_grad[rows]
