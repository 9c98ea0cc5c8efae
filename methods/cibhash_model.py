"""CIBHash's encoder and losses in torch (Qiu, Su, Ou, Yu, Chen, IJCAI 2021; github.com/zexuanqiu/CIBHash,
``model/CIBHash.py``). Imports torch; `methods.cibhash` imports this module inside ``fit`` only.

For a batch of B rows with two views each, features ``x_i``, ``x_j`` (B × d):

* encoder ``p = σ(W2 relu(W1 x + b1) + b2)`` (B × r), the Bernoulli probability of each bit;
* code ``z = sign(p - 1/2)`` with the straight-through estimator: the forward pass is the sign, the
  backward pass passes the gradient unchanged, ``∂L/∂(p - 1/2) := ∂L/∂z`` (the authors' ``hash``
  Function; `sign_straight_through`);
* NT-Xent (`nt_xent`) on the 2B codes ``[z_i; z_j]``: with ``s_kl = cos(z_k, z_l) / τ`` and ``k'`` the
  other view of row ``k``, ``L_c = (1/2B) Σ_k -log(exp(s_kk') / Σ_{l != k} exp(s_kl))``;
* KL term (`bernoulli_kl`): ``L_kl = ½ [KL(p_i || sg(p_j)) + KL(p_j || sg(p_i))]``, each the batch mean of
  the sum over bits of the Bernoulli KL, with the stop-gradient ``sg`` and the ``+1e-8`` inside the logs
  of the authors' ``compute_kl``;
* loss ``L = L_c + weight · L_kl``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from hashbench.methods._torch_device import cpu_generator, resolve_device
from hashbench.methods.base import log_epoch

KL_EPS = 1e-8  # the authors' compute_kl


class _SignST(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # noqa: D102
        return torch.sign(x)

    @staticmethod
    def backward(ctx, grad_output):  # noqa: D102
        return grad_output


def sign_straight_through(x: torch.Tensor) -> torch.Tensor:
    """``sign(x)`` forward; the identity's gradient backward (the straight-through estimator)."""
    return _SignST.apply(x)


class CIBHashEncoder(nn.Module):
    """``d -> hidden -> r`` MLP with a ReLU between; `forward` returns the logits ``a`` (``p = σ(a)``).

    The weights are drawn from ``generator`` with torch's default ``nn.Linear`` distribution,
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for weights and biases (what the authors' code gets)."""

    def __init__(self, n_features: int, hidden: int, n_bits: int, generator: torch.Generator):
        super().__init__()
        self.hidden = nn.Linear(n_features, hidden)
        self.out = nn.Linear(hidden, n_bits)
        with torch.no_grad():
            for layer in (self.hidden, self.out):
                bound = 1.0 / math.sqrt(layer.in_features)
                layer.weight.copy_(torch.empty_like(layer.weight).uniform_(-bound, bound, generator=generator))
                layer.bias.copy_(torch.empty_like(layer.bias).uniform_(-bound, bound, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x)))


def nt_xent(z_i: torch.Tensor, z_j: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent of two views' codes ``z_i``, ``z_j`` (B × r each): module docstring. Cosine similarities
    with norms clamped at 1e-8, as ``nn.CosineSimilarity``; the mean over the 2B anchors."""
    batch = z_i.shape[0]
    z = F.normalize(torch.cat([z_i, z_j]), dim=1, eps=1e-8)
    sim = z @ z.T / temperature
    # Each anchor's own similarity is no candidate: -inf leaves the positive and the 2(B-1) negatives.
    sim = sim.masked_fill(torch.eye(2 * batch, dtype=torch.bool, device=sim.device), float("-inf"))
    partner = torch.cat([torch.arange(batch, 2 * batch), torch.arange(0, batch)]).to(sim.device)
    return F.cross_entropy(sim, partner)


def bernoulli_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``mean_b Σ_k KL(Bern(p_bk) || Bern(sg(q_bk)))`` with the authors' ``+1e-8`` in the logs."""
    q = q.detach()
    kl = p * (torch.log(p + KL_EPS) - torch.log(q + KL_EPS)) + (1 - p) * (
        torch.log(1 - p + KL_EPS) - torch.log(1 - q + KL_EPS))
    return kl.sum(dim=1).mean()


def cibhash_losses(encoder: CIBHashEncoder, x_i: torch.Tensor, x_j: torch.Tensor, temperature: float,
                   weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(L, L_c, L_kl)`` of one batch of view pairs (module docstring)."""
    p_i, p_j = torch.sigmoid(encoder(x_i)), torch.sigmoid(encoder(x_j))
    z_i, z_j = sign_straight_through(p_i - 0.5), sign_straight_through(p_j - 0.5)
    kl = 0.5 * (bernoulli_kl(p_i, p_j) + bernoulli_kl(p_j, p_i))
    contrastive = nt_xent(z_i, z_j, temperature)
    return contrastive + weight * kl, contrastive, kl


def draw_view_pairs(n_rows: int, n_views: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two different view numbers per row, uniform over the ordered pairs of the pool (CPU tensors)."""
    first = torch.randint(0, n_views, (n_rows,), generator=generator)
    second = (first + torch.randint(1, n_views, (n_rows,), generator=generator)) % n_views
    return first, second


@dataclass
class CIBHashFit:
    """Trained encoder (float32 numpy: ``w1`` d × h, ``b1`` h, ``w2`` h × r, ``b2`` r) and per-epoch curves."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    history: dict[str, list[float]] = field(default_factory=dict)
    iterations: int = 0


def train_cibhash(views: np.ndarray, n_bits: int, *, hidden: int, temperature: float, weight: float, lr: float,
                  batch_size: int, epochs: int, seed: int, device: str) -> CIBHashFit:
    """Train the encoder on ``views`` (n × V × d float32, V >= 2) with Adam for ``epochs`` passes.

    Each pass visits the rows in a seeded random order in batches of ``batch_size`` (the last one
    smaller, as the authors' ``DataLoader``); each row of a batch contributes two different views of
    its pool (`draw_view_pairs`). Every random number (weights, order, views) comes from one CPU
    generator seeded with ``seed``. ``history``: per pass the means over its batches of ``loss``,
    ``contrastive`` and ``kl``.
    """
    dev = resolve_device(device)
    generator = cpu_generator(seed)
    n, n_views, d = views.shape
    encoder = CIBHashEncoder(d, hidden, n_bits, generator).to(dev)
    data = torch.from_numpy(np.ascontiguousarray(views, dtype=np.float32)).to(dev)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=lr)
    history: dict[str, list[float]] = {"loss": [], "contrastive": [], "kl": []}
    steps = 0
    for epoch in tqdm(range(epochs), desc="cibhash", unit="epoch", disable=None, leave=False):
        order = torch.randperm(n, generator=generator)
        first, second = draw_view_pairs(n, n_views, generator)
        sums = torch.zeros(3, device=dev)
        n_batches = 0
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            x_i = data[rows.to(dev), first[rows].to(dev)]
            x_j = data[rows.to(dev), second[rows].to(dev)]
            loss, contrastive, kl = cibhash_losses(encoder, x_i, x_j, temperature, weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sums += torch.stack([loss.detach(), contrastive.detach(), kl.detach()])
            n_batches += 1
            steps += 1
        for key, value in zip(("loss", "contrastive", "kl"), (sums / n_batches).tolist()):
            history[key].append(float(value))
        log_epoch("cibhash", epoch + 1, history)
    return CIBHashFit(
        w1=encoder.hidden.weight.detach().cpu().numpy().T.astype(np.float32),
        b1=encoder.hidden.bias.detach().cpu().numpy().astype(np.float32),
        w2=encoder.out.weight.detach().cpu().numpy().T.astype(np.float32),
        b2=encoder.out.bias.detach().cpu().numpy().astype(np.float32),
        history=history,
        iterations=steps,
    )
