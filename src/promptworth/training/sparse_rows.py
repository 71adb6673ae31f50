"""AdamW for a trained embedding, on the rows its gradients touched: the dense optimizer's result
without its dense work.

A batch reads a few hundred of an embedding's rows (SmolLM2: 49,152 x 576, a fifth of its
parameters; Gemma-3-270M: 262,144 x 640, three fifths), yet the dense path pays every step for the
whole table: a zero-filled gradient (one more for a tied output layer), its share of clipping, and
AdamW's pass over every row. With the embedding's ``sparse`` gradient (its rows and their values),
:class:`SparseRows` updates only the rows some step has touched, with the very fused AdamW kernel
on those rows gathered, and writes them back. It is exact, with weight decay 0: a row no step has
touched has zero moments and a zero gradient, so AdamW moves it by exactly 0 (its update is
``0 / (0 + eps)``); a touched row moves at every later step (momentum), and so it is updated at
every later step, with the same step count, learning rate and clipping scale as the other weights.
With weight decay, AdamW moves every row every step: the lever is off (training.engine).
"""

from __future__ import annotations

import torch


class SparseRows:
    """The optimizer state of one embedding weight, updated on the rows ever touched."""

    def __init__(self, weight: torch.nn.Parameter, betas: tuple[float, float], eps: float) -> None:
        self.weight = weight
        self.betas = betas
        self.eps = eps
        self.exp_avg = torch.zeros_like(weight, memory_format=torch.preserve_format)
        self.exp_avg_sq = torch.zeros_like(weight, memory_format=torch.preserve_format)
        self.touched = torch.zeros(weight.shape[0], dtype=torch.bool, device=weight.device)
        # on the weight's device: the fused kernel reads the step count there (a CUDA kernel cannot read a CPU tensor)
        self.steps = torch.zeros((), dtype=torch.float32, device=weight.device)

    def gradient(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """This step's gradient as (rows, values), each row once; None when it has none. A dense
        gradient (a module read the whole table) counts every row."""
        grad = self.weight.grad
        if grad is None:
            return None
        if grad.is_sparse:
            grad = grad.coalesce()
            return grad.indices()[0], grad.values()
        return torch.arange(grad.shape[0], device=grad.device), grad

    @torch.no_grad()
    def step(self, rows: torch.Tensor, values: torch.Tensor, lr: float, grad_scale: torch.Tensor | None) -> None:
        """One AdamW step (weight decay 0) of every row touched so far; ``values`` are this step's
        gradients of ``rows`` (divided by ``grad_scale``, as the fused kernel does), the others' are 0."""
        self.touched[rows] = True
        active = self.touched.nonzero().squeeze(1)
        grads = torch.zeros((len(active), *self.weight.shape[1:]), dtype=values.dtype, device=values.device)
        grads[torch.searchsorted(active, rows)] = values
        params, exp_avg, exp_avg_sq = self.weight[active], self.exp_avg[active], self.exp_avg_sq[active]
        self.steps += 1  # torch.optim.AdamW counts before its kernel runs
        torch._fused_adamw_([params], [grads], [exp_avg], [exp_avg_sq], [], [self.steps], lr=lr,
                            beta1=self.betas[0], beta2=self.betas[1], weight_decay=0.0, eps=self.eps,
                            amsgrad=False, maximize=False, grad_scale=grad_scale)
        self.weight[active] = params
        self.exp_avg[active] = exp_avg
        self.exp_avg_sq[active] = exp_avg_sq
        self.weight.grad = None
