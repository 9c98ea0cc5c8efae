"""DeepBit (Lin, Lu, Chen & Zhou, CVPR 2016): the trained head, its three losses and the two-stage loop.

Imports torch; `methods.deepbit` imports this module inside ``fit`` only.

Head: ``F(x) = act(x W + b)`` on a frozen backbone's feature ``x`` (W: d × r, init N(0, std²), b = 0),
``act`` = sigmoid (paper) or ReLU (released prototxt). With ``B`` rows of a batch:

* quantisation ``Q = 1/(2B) Σ_n ||b_n - F_n||²``, ``b = 1[F > 0.5]`` held constant (a straight-through
  ``b`` would cancel the term's gradient exactly); the paper's ``||(b - 0.5) - (F - 0.5)||²`` and
  the release's ``MinQuantizeLoss`` normalisation;
* even distribution ``E = ½ Σ_m (μ_m - 0.5)²``, ``μ_m = 1/B Σ_n b_nm``. A binary ``b`` has no
  gradient: ``estimator="straight-through"`` uses ``b`` forward and ``∂b/∂F = 1`` backward,
  ``"activation"`` uses ``μ_m = 1/B Σ_n F_nm``. (The release also divides by ``B``, which makes the
  term vanish against the others; we keep the paper's unnormalised sum, halved like the other terms);
* rotation invariance ``R = 1/(2B(V+1)) Σ_n Σ_v C(θ_v) ||F(x_n) - F(x_n^{θ_v})||²`` with
  ``C(θ) = exp(-(θ/5)²/2)``. The release averages over (image, rotation) pairs, the 0° pair included,
  whence ``V + 1``; the 0° view is ``x`` itself, whose term is zero on fixed features.

Stage 1 minimises ``w_q Q + w_e E``; stage 2 minimises, on batches of images with their views, the
release's two siamese branches ``w_q (Q(F_x) + Q(F_all)) + w_e (E(F_x) + E(F_all)) + w_r R``, where
``F_all`` stacks the images' and their views' outputs (the release's second branch holds every
rotation, 0° included). Every gradient comes from autograd: unlike the released Caffe layers, which
feed one blob twice with opposite-sign constant gradients, nothing cancels.
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
from hashbench.methods.deepbit import ACTIVATIONS, BALANCE_ESTIMATORS


class DeepBitHead(nn.Module):
    """``F(x) = act(x W + b)``."""

    def __init__(self, n_features: int, n_bits: int, activation: str, init_std: float, generator):
        super().__init__()
        self.linear = nn.Linear(n_features, n_bits)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(n_bits, n_features, generator=generator) * init_std)
            self.linear.bias.zero_()
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.linear(x)
        return torch.sigmoid(a) if self.activation == "sigmoid" else torch.relu(a)


def quantization_loss(F: torch.Tensor) -> torch.Tensor:
    """``1/(2B) Σ_n ||1[F_n > 0.5] - F_n||²`` with the binary target held constant."""
    b = (F > 0.5).to(F.dtype).detach()
    return (b - F).pow(2).sum(dim=1).mean() / 2


def balance_loss(F: torch.Tensor, estimator: str) -> torch.Tensor:
    """``½ Σ_m (μ_m - 0.5)²`` over the bits, ``μ`` the batch mean of the bits (see the module docstring)."""
    if estimator == "straight-through":
        hard = (F > 0.5).to(F.dtype)
        bits = F + (hard - F).detach()
    else:
        bits = F
    return 0.5 * (bits.mean(dim=0) - 0.5).pow(2).sum()


def rotation_weights(angles, scale: float) -> torch.Tensor:
    """``C(θ) = exp(-(θ/scale)²/2)`` per view angle (the release's ``exp(-(aug-3)²/2)``, 5° steps)."""
    theta = torch.as_tensor(angles, dtype=torch.float32)
    return torch.exp(-0.5 * (theta / scale) ** 2)


def rotation_loss(F_x: torch.Tensor, F_views: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``1/(2B(V+1)) Σ_n Σ_v C_v ||F_x[n] - F_views[n, v]||²``; ``F_x`` (B, r), ``F_views`` (B, V, r)."""
    batch, n_views = F_views.shape[:2]
    squared = (F_views - F_x[:, None, :]).pow(2).sum(dim=2)
    return (squared * weights).sum() / (2 * batch * (n_views + 1))


@dataclass
class DeepBitFit:
    """Trained head (``weight`` d × r, ``bias`` r, float32 numpy), per-epoch curves and step counts."""

    weight: np.ndarray
    bias: np.ndarray
    history: dict[str, list[float]] = field(default_factory=dict)
    iterations: tuple[int, int] = (0, 0)


def _index_stream(n: int, batch: int, generator: torch.Generator):
    """Consecutive batches of a stream of seeded permutations of ``range(n)``, crossing epochs like
    Caffe's data layer (every row once per pass)."""
    buffer = torch.empty(0, dtype=torch.long)
    while True:
        while buffer.numel() < batch:
            buffer = torch.cat([buffer, torch.randperm(n, generator=generator)])
        yield buffer[:batch]
        buffer = buffer[batch:]


def _sgd(head: DeepBitHead, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    # Caffe's fc8_kevin: weight lr_mult 1, decay_mult 1; bias lr_mult 2, decay_mult 0.
    return torch.optim.SGD(
        [
            {"params": [head.linear.weight], "lr": lr, "weight_decay": weight_decay, "lr_mult": 1.0},
            {"params": [head.linear.bias], "lr": 2 * lr, "weight_decay": 0.0, "lr_mult": 2.0},
        ],
        lr=lr,
        momentum=momentum,
    )


def train_deepbit(
    X: np.ndarray,
    views: np.ndarray,
    n_bits: int,
    *,
    view_angles,
    angle_scale: float,
    activation: str,
    balance_estimator: str,
    weights: tuple[float, float, float],
    init_std: float,
    momentum: float,
    weight_decay: float,
    lr_gamma: float,
    stage1: tuple[float, int, int, int],
    stage2: tuple[float, int, int, int],
    seed: int,
    device: str,
) -> DeepBitFit:
    """Train the head in two stages on ``X`` (n × d) and ``views`` (n × V × d).

    ``stage1`` / ``stage2`` are ``(lr, images per batch, iterations, step)``: the rate at iteration
    ``t`` of a stage is ``lr · lr_gamma^⌊t / step⌋`` (Caffe's "step" policy); each stage has its own
    SGD with momentum, as the release restarts the solver. ``history`` has, per block of one pass
    over the rows (the last block of a stage may be shorter), the block means of ``loss`` (the
    minimised objective), ``quantization``, ``balance`` (both branches summed in stage 2) and
    ``rotation`` (the unweighted ``R`` of the batches; in stage 1, where it is only watched, ``R`` of the
    block's last batch), plus ``stage`` and ``lr`` at the block's end.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}")
    if balance_estimator not in BALANCE_ESTIMATORS:
        raise ValueError(f"balance_estimator must be one of {BALANCE_ESTIMATORS}")
    dev = resolve_device(device)
    generator = cpu_generator(seed)
    n, d = X.shape
    head = DeepBitHead(d, n_bits, activation, init_std, generator).to(dev)
    data = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(dev)
    view_data = torch.from_numpy(np.ascontiguousarray(views, dtype=np.float32)).to(dev)
    C = rotation_weights(view_angles, angle_scale).to(dev)
    w_q, w_e, w_r = weights

    history: dict[str, list[float]] = {k: [] for k in ("loss", "quantization", "balance", "rotation", "stage", "lr")}
    for stage, (lr, batch, n_iter, step_size) in ((1, stage1), (2, stage2)):
        if n_iter <= 0:
            continue
        optimizer = _sgd(head, lr, momentum, weight_decay)
        stream = _index_stream(n, batch, generator)
        block = max(1, math.ceil(n / batch))
        block_terms: list[tuple[torch.Tensor, ...]] = []  # (loss, quantization, balance) of the block's steps
        block_r: list[torch.Tensor] = []  # R of the block's steps (stage 1: its last step only)
        for t in tqdm(range(n_iter), desc=f"deepbit stage {stage}", unit="it", disable=None, leave=False):
            current_lr = lr * lr_gamma ** (t // step_size)
            for group in optimizer.param_groups:
                group["lr"] = current_lr * group["lr_mult"]
            index = next(stream).to(dev)
            F_x = head(data[index])
            closes_block = len(block_terms) + 1 == block or t == n_iter - 1
            if stage == 1:
                q, e = quantization_loss(F_x), balance_loss(F_x, balance_estimator)
                loss = w_q * q + w_e * e
                # R is only watched in stage 1: measured on the block's last batch, since a forward pass of
                # every batch's V views would cost more than the training step itself (V = 4 at batch 32)
                r = None
                if closes_block:
                    with torch.no_grad():
                        r = rotation_loss(F_x, head(view_data[index]), C)
            else:
                F_v = head(view_data[index])
                F_all = torch.cat([F_x, F_v.reshape(-1, n_bits)])
                q = quantization_loss(F_x) + quantization_loss(F_all)
                e = balance_loss(F_x, balance_estimator) + balance_loss(F_all, balance_estimator)
                r = rotation_loss(F_x, F_v, C)
                loss = w_q * q + w_e * e + w_r * r
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            block_terms.append((loss.detach(), q.detach(), e.detach()))
            if r is not None:
                block_r.append(r.detach())
            if closes_block:
                # one host sync per block: the per-step scalars stay on the device until here
                means = torch.stack([torch.stack(t) for t in block_terms]).mean(0).tolist()
                means.append(float(torch.stack(block_r).mean()))
                for key, value in zip(("loss", "quantization", "balance", "rotation"), means):
                    history[key].append(float(value))
                history["stage"].append(float(stage))
                history["lr"].append(float(current_lr))
                log_epoch(f"deepbit stage {stage}", len(history["lr"]), history)
                block_terms, block_r = [], []

    return DeepBitFit(
        weight=head.linear.weight.detach().cpu().numpy().T.astype(np.float32),
        bias=head.linear.bias.detach().cpu().numpy().astype(np.float32),
        history=history,
        iterations=(stage1[2], stage2[2]),
    )
