"""Torch side of the cosine-preserving hashing heads (GreedyHash-unsupervised, BiHalf): the two binary
layers, the shared loss and the shared training loop.

Imports torch; `methods._cosine_hash` imports this module inside ``fit`` only.

Model, on a frozen backbone's feature ``x`` (d) and ``r`` bits: ``h = x W + b`` (``nn.Linear``'s
initialisation, ``U(-1/√d, 1/√d)`` for ``W`` and ``b``), then a binary layer ``B(h)``:

* ``layer="sign"`` (GreedyHash, Su et al. NeurIPS 2018): ``B = sign(h)`` forward, ``∂L/∂h = ∂L/∂B``
  backward (the straight-through identity of the authors' ``Hash`` function);
* ``layer="bihalf"`` (Li & van Gemert AAAI 2021): per bit, the ``⌊N/2⌋`` largest ``h`` of the batch
  of ``N`` rows become +1, the others -1 (``sort`` along the batch, ties by sort order), and backward
  ``∂L/∂h = ∂L/∂B + γ (h - B) / (N r)`` (the authors' ``hash.backward``, γ = 6).

Loss on a batch whose first ``k = ⌊N/2⌋`` rows are paired with the next ``k`` (the authors' half-batch
pairs; an odd batch's last row is in no pair):

    L = 1/k Σ_i (cos(B_i, B_{k+i}) - cos(x_i, x_{k+i}))²  +  α · 1/(N r) Σ | |h| - 1 |³,

the second term GreedyHash's (α = 0.1), absent for BiHalf (α = 0). Both use the authors' SGD with
momentum and weight decay on ``W`` and ``b`` and the step schedule ``lr · lr_gamma^⌊epoch / step⌋``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from hashbench.methods._torch_device import cpu_generator, resolve_device
from hashbench.methods.base import log_epoch

LAYERS = ("sign", "bihalf")


class SignStraightThrough(torch.autograd.Function):
    """``sign(h)`` forward; the incoming gradient unchanged backward (GreedyHash)."""

    @staticmethod
    def forward(ctx, h: torch.Tensor) -> torch.Tensor:
        return torch.sign(h)

    @staticmethod
    def backward(ctx, grad_b: torch.Tensor) -> torch.Tensor:
        return grad_b


def bihalf_codes(h: torch.Tensor) -> torch.Tensor:
    """Per column of ``h`` (N, r): +1 on the ``⌊N/2⌋`` largest entries, -1 on the rest."""
    n = h.shape[0]
    order = torch.argsort(h, dim=0, descending=True)
    template = torch.ones_like(h)
    template[n // 2 :] = -1.0
    return torch.empty_like(h).scatter_(0, order, template)


class BiHalf(torch.autograd.Function):
    """The bi-half layer: `bihalf_codes` forward; ``∂h = ∂B + γ (h - B) / numel`` backward."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, gamma: float) -> torch.Tensor:
        b = bihalf_codes(h)
        ctx.save_for_backward(h, b)
        ctx.gamma = gamma
        return b

    @staticmethod
    def backward(ctx, grad_b: torch.Tensor):
        h, b = ctx.saved_tensors
        return grad_b + ctx.gamma * (h - b) / b.numel(), None


def binary_layer(h: torch.Tensor, layer: str, gamma: float) -> torch.Tensor:
    """``B(h)`` of the module docstring for ``layer`` ``"sign"`` or ``"bihalf"``."""
    if layer == "sign":
        return SignStraightThrough.apply(h)
    if layer == "bihalf":
        return BiHalf.apply(h, gamma)
    raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")


def cosine_preservation_loss(b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``1/k Σ_i (cos(b_i, b_{k+i}) - cos(x_i, x_{k+i}))²``, ``k = ⌊N/2⌋`` (``b`` (N, r), ``x`` (N, d)).

    The authors' ``F.mse_loss(cos(b[:N/2], b[N/2:]), cos(x[:N/2], x[N/2:]))``; rows past ``2k`` unused.
    """
    k = b.shape[0] // 2
    if k == 0:
        raise ValueError("the cosine-preservation loss needs a batch of at least 2 rows")
    code_cos = nn.functional.cosine_similarity(b[:k], b[k : 2 * k], dim=1)
    feature_cos = nn.functional.cosine_similarity(x[:k], x[k : 2 * k], dim=1)
    return nn.functional.mse_loss(code_cos, feature_cos)


def cubic_quantization_loss(h: torch.Tensor) -> torch.Tensor:
    """GreedyHash's ``mean(| |h| - 1 |³)`` over the batch and bits."""
    return (h.abs() - 1.0).pow(3).abs().mean()


class CosineHashHead(nn.Module):
    """``h = x W + b`` with ``nn.Linear``'s initialisation drawn from ``generator``."""

    def __init__(self, n_features: int, n_bits: int, generator: torch.Generator):
        super().__init__()
        self.linear = nn.Linear(n_features, n_bits)
        bound = 1.0 / math.sqrt(n_features)
        with torch.no_grad():
            self.linear.weight.copy_((torch.rand(n_bits, n_features, generator=generator) * 2 - 1) * bound)
            self.linear.bias.copy_((torch.rand(n_bits, generator=generator) * 2 - 1) * bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def batch_losses(
    head: CosineHashHead, x: torch.Tensor, layer: str, gamma: float, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(L, similarity, quantization)`` on the batch ``x`` (module docstring); ``quantization`` is the
    unweighted cubic term, monitored for both layers, in the loss only when ``alpha > 0``."""
    h = head(x)
    similarity = cosine_preservation_loss(binary_layer(h, layer, gamma), x)
    quantization = cubic_quantization_loss(h)
    loss = similarity + alpha * quantization if alpha > 0 else similarity
    return loss, similarity, quantization


@dataclass
class CosineHashFit:
    """Trained head (``weight`` d × r, ``bias`` r, float32 numpy) and per-epoch curves."""

    weight: np.ndarray
    bias: np.ndarray
    history: dict[str, list[float]] = field(default_factory=dict)


def train_cosine_hash(
    X: np.ndarray,
    n_bits: int,
    *,
    name: str,
    layer: str,
    gamma: float,
    alpha: float,
    lr: float,
    momentum: float,
    weight_decay: float,
    batch_size: int,
    epochs: int,
    lr_step_epochs: int,
    lr_gamma: float,
    seed: int,
    device: str,
) -> CosineHashFit:
    """Train the head on ``X`` (n × d, float32) for ``epochs`` passes, each over a fresh seeded
    permutation in batches of ``batch_size`` (the last one shorter, as the authors' data loader; a
    1-row remainder is skipped: it makes no pair). The rate in epoch ``e`` (0-based) is
    ``lr · lr_gamma^⌊e / lr_step_epochs⌋``.

    ``history`` has per epoch the batch means of ``loss``, ``similarity`` and ``quantization`` and
    the epoch's ``lr``; each epoch is also logged (`log_epoch`) under ``name``.

    Raises:
        ValueError: an unknown ``layer``.
    """
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
    dev = resolve_device(device)
    generator = cpu_generator(seed)
    n, d = X.shape
    head = CosineHashHead(d, n_bits, generator).to(dev)
    data = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(dev)
    optimizer = torch.optim.SGD(head.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)

    history: dict[str, list[float]] = {"loss": [], "similarity": [], "quantization": [], "lr": []}
    for epoch in tqdm(range(epochs), desc=name, unit="epoch", disable=None, leave=False):
        current_lr = lr * lr_gamma ** (epoch // lr_step_epochs)
        for group in optimizer.param_groups:
            group["lr"] = current_lr
        order = torch.randperm(n, generator=generator).to(dev)
        sums = torch.zeros(3, device=dev)
        n_batches = 0
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            if index.numel() < 2:
                continue
            loss, similarity, quantization = batch_losses(head, data[index], layer, gamma, alpha)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sums += torch.stack([loss.detach(), similarity.detach(), quantization.detach()])
            n_batches += 1
        for key, value in zip(("loss", "similarity", "quantization"), (sums / max(n_batches, 1)).tolist()):
            history[key].append(float(value))
        history["lr"].append(float(current_lr))
        log_epoch(name, epoch + 1, history)

    return CosineHashFit(
        weight=head.linear.weight.detach().cpu().numpy().T.astype(np.float32),
        bias=head.linear.bias.detach().cpu().numpy().astype(np.float32),
        history=history,
    )
