"""Stochastic Generative Hashing (Dai, Guo, Kumar, He & Song, ICML 2017): torch model and training loop.

Imports torch; `methods.sgh` imports this module inside ``fit`` only.

Model, with ``x`` a row of the (possibly standardised) training features, ``r`` bits:

* encoder ``logits = x W + b`` (W: d × r), ``q(h | x) = Π_k Bern(h_k; σ(logits_k))``;
* doubly stochastic neuron ``h = 1[σ(logits) >= ξ]`` with ``ξ ~ U(0, 1)`` (``xi="stochastic"``) or
  ``ξ = 0.5`` (``xi="deterministic"``, the authors' demo);
* decoder ``x̂ = (h U) ⊙ |s| + m`` (U: r × d), ``s`` initialised to the per-dimension training
  variance (clipped at 1e-7) and ``m`` to the training mean, both learned.

Loss on a batch ``B``, summed over its rows as in the authors' TF code (so ``α``, ``β`` keep their
meaning against a 500-row batch):

    L = ½ Σ_B ||x̂ - x||² + α Σ_B Σ_k CE(logits_k, h_k) + β (½||U||² + ½||W||²),
    CE(l, h) = softplus(l) - l h = -h log σ(l) - (1 - h) log(1 - σ(l)),

with CE differentiated in both arguments (the TF op lets gradient reach its ``labels``). The neuron's
backward is the distributional derivative of the paper, a straight-through through the sigmoid:

    ∂L/∂logits = σ(1 - σ) ⊙ ∂L/∂h  (+ the direct path of CE, ``α (σ - h)``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from hashbench.methods.base import log_epoch
from hashbench.methods._torch_device import cpu_generator, resolve_device
from hashbench.methods.sgh import XI_MODES


class DoublyStochasticNeuron(torch.autograd.Function):
    """``h = 1[logits >= τ]`` forward; ``∂logits = σ(logits)(1 - σ(logits)) ∂h`` backward.

    ``τ = logit(ξ)``, so that ``h = 1[σ(logits) >= ξ]``; comparing logits keeps ``ξ = 0.5`` exact
    (``τ = 0``), matching the test-time code ``z = logits >= 0``. No gradient reaches ``τ``.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits)
        return (logits >= threshold).to(logits.dtype)

    @staticmethod
    def backward(ctx, grad_h: torch.Tensor):
        (logits,) = ctx.saved_tensors
        prob = torch.sigmoid(logits)
        return grad_h * prob * (1.0 - prob), None


def encoder_ce(logits: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Elementwise ``softplus(l) - l h``: sigmoid cross-entropy, differentiable in ``h`` too."""
    return nn.functional.softplus(logits) - logits * h


class SGHNet(nn.Module):
    """Linear SGH encoder and decoder (see the module docstring); ``forward`` returns
    ``(logits, h, x_hat)`` for a batch and the thresholds ``τ = logit(ξ)``."""

    def __init__(self, n_features: int, n_bits: int, mean: np.ndarray, variance: np.ndarray, generator):
        super().__init__()
        # The authors' initialisation: W ~ N(0, 1/d), b ~ N(0, 1), U ~ N(0, 1/r).
        self.weight = nn.Parameter(torch.randn(n_features, n_bits, generator=generator) / math.sqrt(n_features))
        self.bias = nn.Parameter(torch.randn(n_bits, generator=generator))
        self.decoder = nn.Parameter(torch.randn(n_bits, n_features, generator=generator) / math.sqrt(n_bits))
        self.scale = nn.Parameter(torch.as_tensor(variance, dtype=torch.float32).clone())
        self.shift = nn.Parameter(torch.as_tensor(mean, dtype=torch.float32).clone())

    def forward(self, x: torch.Tensor, threshold: torch.Tensor):
        logits = x @ self.weight + self.bias
        h = DoublyStochasticNeuron.apply(logits, threshold)
        x_hat = (h @ self.decoder) * self.scale.abs() + self.shift
        return logits, h, x_hat


def sgh_loss(net: SGHNet, x: torch.Tensor, threshold: torch.Tensor, alpha: float, beta: float):
    """``(L, reconstruction, ce)`` on batch ``x`` (sums over the batch, see the module docstring)."""
    logits, h, x_hat = net(x, threshold)
    reconstruction = 0.5 * (x_hat - x).pow(2).sum()
    ce = encoder_ce(logits, h).sum()
    decay = 0.5 * net.decoder.pow(2).sum() + 0.5 * net.weight.pow(2).sum()
    return reconstruction + alpha * ce + beta * decay, reconstruction, ce


def sample_thresholds(xi: str, shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """``logit(ξ)`` for a batch: zeros for ``"deterministic"`` (ξ = 0.5), logistic noise for
    ``"stochastic"`` (ξ ~ U(0, 1))."""
    if xi == "deterministic":
        return torch.zeros(shape)
    return torch.logit(torch.rand(shape, generator=generator))


@dataclass
class SGHFit:
    """Trained SGH parameters as float32 numpy arrays, plus per-epoch curves."""

    weight: np.ndarray
    bias: np.ndarray
    decoder: np.ndarray
    scale: np.ndarray
    shift: np.ndarray
    history: dict[str, list[float]] = field(default_factory=dict)


def train_sgh(
    X: np.ndarray,
    n_bits: int,
    *,
    xi: str,
    alpha: float,
    beta: float,
    lr: float,
    batch_size: int,
    n_iter: int,
    halve_every: int | None,
    seed: int,
    device: str,
) -> SGHFit:
    """Train SGH on ``X`` (n × d) for ``n_iter`` Adam steps on batches of ``batch_size`` rows drawn
    with replacement; the learning rate is ``lr · 0.5^⌊t / halve_every⌋`` at step ``t``.

    ``history`` holds, per block of ``⌈n / batch_size⌉`` steps (one epoch's worth of rows), the mean
    over its steps of ``loss``, ``reconstruction`` and ``encoder_ce`` divided by the batch size (the
    authors' printed "Loss"), and the ``lr`` at the block's end.
    """
    if xi not in XI_MODES:
        raise ValueError(f"xi must be one of {XI_MODES}")
    dev = resolve_device(device)
    generator = cpu_generator(seed)
    X = np.ascontiguousarray(X, dtype=np.float32)
    n, d = X.shape
    mean = X.mean(axis=0, dtype=np.float64)
    variance = np.clip(X.var(axis=0, dtype=np.float64), 1e-7, None)
    net = SGHNet(d, n_bits, mean, variance, generator).to(dev)
    data = torch.from_numpy(X).to(dev)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)

    block = max(1, math.ceil(n / batch_size))
    history: dict[str, list[float]] = {"loss": [], "reconstruction": [], "encoder_ce": [], "lr": []}
    sums = torch.zeros(3, device=dev)
    steps_in_block = 0
    current_lr = lr
    for step in tqdm(range(n_iter), desc="sgh", unit="it", disable=None, leave=False):
        current_lr = lr * 0.5 ** (step // halve_every) if halve_every else lr
        for group in optimizer.param_groups:
            group["lr"] = current_lr
        index = torch.randint(n, (batch_size,), generator=generator).to(dev)
        threshold = sample_thresholds(xi, (batch_size, n_bits), generator).to(dev)
        loss, reconstruction, ce = sgh_loss(net, data[index], threshold, alpha, beta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sums += torch.stack([loss.detach(), reconstruction.detach(), ce.detach()]) / batch_size
        steps_in_block += 1
        if steps_in_block == block or step == n_iter - 1:
            means = (sums / steps_in_block).tolist()
            for key, value in zip(("loss", "reconstruction", "encoder_ce"), means):
                history[key].append(float(value))
            history["lr"].append(float(current_lr))
            log_epoch("sgh", len(history["lr"]), history)
            sums.zero_()
            steps_in_block = 0

    def numpy(p: torch.Tensor) -> np.ndarray:
        return p.detach().cpu().numpy().astype(np.float32)

    return SGHFit(
        weight=numpy(net.weight),
        bias=numpy(net.bias),
        decoder=numpy(net.decoder),
        scale=numpy(net.scale),
        shift=numpy(net.shift),
        history=history,
    )
