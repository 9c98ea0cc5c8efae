"""Auto-Encoding Twin-Bottleneck Hashing (Shen et al., CVPR 2020): torch model
and training loop, following the authors' TensorFlow code (``ymcidence/TBH``: ``layer/encodec.py``,
``layer/twin_bottleneck.py``, ``layer/gcn.py``, ``model/tbh.py``, ``train/tbh_train.py``).

Imports torch and torch_geometric; `methods.tbh` imports this module inside ``fit`` only.

Model, ``x`` a row of the training features (d), ``r`` bits, ``c`` the continuous width (512), ``m`` the
hidden width (1024):

* encoder ``e = relu(x W1 + b1)``; binary bottleneck ``b = 1[σ(e W2 + b2) >= ξ]`` through SGH's
  doubly stochastic neuron (`methods.sgh_model.DoublyStochasticNeuron`: backward
  ``∂logits = σ(1 - σ) ∂b``, the authors' ``binary_activation`` with no gradient through ``prob``,
  which their losses never use); ξ = 0.5 in the authors' code (their random ξ is commented out);
  continuous bottleneck ``y = σ(e W3 + b3)`` (c);
* code-driven graph over the batch ``A_ij = (1 - |b_i (b_j - 1)ᵀ + (b_i - 1) b_jᵀ| / r)^1.4``
  (= ``(1 - Hamming(b_i, b_j) / r)^1.4``, differentiable in ``b``; self-connected, ``A_ii = 1``);
* twin bottleneck ``t = σ(D^-½ A D^-½ (y W4 + b4))``, ``D = diag(A 1)``: torch_geometric's
  `DenseGCNConv` (``add_loop=False``: ``A`` is already self-connected; its degree clamp at 1 never
  binds since ``A_ii = 1``) on ``[y, 1]`` without its own bias, so that the bias ``b4`` is
  propagated by the graph as the authors' ``Dense`` before the convolution does (the layer's bias
  would be added after it);
* decoder ``x̂ = relu(relu(t W5 + b5) W6 + b6)`` (``output="relu"``, the authors' ReLU output for
  fc7 features) or without the last ReLU (``output="linear"``);
* discriminators ``D_b(v) = σ(v w_b + a_b)`` on binary vectors and ``D_t(v) = σ(v w_t + a_t)`` on the
  twin bottleneck's output (one dense layer each, as the authors').

Losses on a batch ``B`` (the authors' ``train_step``), with ``b̃ ~ Bern(0.5)^r`` and ``t̃ ~ U(0, 1)^c``
drawn per row:

    adv(D, real, fake) = mean BCE(D(real), 1) + mean BCE(D(fake), 0)
    L_actor  = ½ Σ_B ||x̂ - x||² - adv(D_b, b̃, b) - adv(D_t, t̃, t)     (encoder, graph layer, decoder)
    L_critic =                   adv(D_b, b̃, b) + adv(D_t, t̃, t)     (the two discriminators)

both from one forward pass, each minimised by its own Adam (lr 1e-4 in the authors' code). The
reconstruction is summed over rows and dimensions (``reduce_mean(l2_loss(·))`` of a scalar).
BCE is computed from the discriminators' logits (Keras clips the probabilities at 1e-7 instead).
Initialisation: Keras' defaults, Glorot-uniform weights and zero biases, drawn from a CPU generator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch_geometric.nn import DenseGCNConv
from tqdm.auto import tqdm

from hashbench.methods._torch_device import cpu_generator, resolve_device
from hashbench.methods.base import log_epoch
from hashbench.methods.sgh_model import DoublyStochasticNeuron, sample_thresholds

HISTORY_KEYS = ("actor", "critic", "reconstruction", "adv_binary", "adv_continuous")


def glorot_(weight: torch.Tensor, fan_in: int, fan_out: int, generator: torch.Generator) -> None:
    """Fill ``weight`` in place from U(-a, a), ``a = sqrt(6 / (fan_in + fan_out))`` (Keras' default)."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        weight.copy_((torch.rand(weight.shape, generator=generator) * 2.0 - 1.0) * limit)


def _dense(n_in: int, n_out: int, generator: torch.Generator) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    glorot_(layer.weight, n_in, n_out, generator)
    nn.init.zeros_(layer.bias)
    return layer


def hamming_affinity(b: torch.Tensor, power: float = 1.4) -> torch.Tensor:
    """``A = (1 - Hamming/r)^power`` for 0/1 codes ``b`` (n, r) -> (n, n), written as the authors'
    ``build_adjacency_hamming`` (matrix products, so that a gradient reaches ``b``)."""
    r = b.shape[1]
    m1 = b - 1.0
    distance = (b @ m1.T + m1 @ b.T).abs() / r
    return (1.0 - distance).pow(power)


class TBHNet(nn.Module):
    """Encoder, twin bottleneck, decoder and the two discriminators (module docstring)."""

    def __init__(self, n_features: int, n_bits: int, *, hidden: int, continuous_dim: int, graph_power: float,
                 output: str, generator: torch.Generator):
        super().__init__()
        self.graph_power = graph_power
        self.output = output
        self.encoder_hidden = _dense(n_features, hidden, generator)
        self.binary_head = _dense(hidden, n_bits, generator)
        self.continuous_head = _dense(hidden, continuous_dim, generator)
        # The last input column is a constant 1: its weights are the authors' Dense bias (zero at start).
        self.graph_conv = DenseGCNConv(continuous_dim + 1, continuous_dim, bias=False)
        with torch.no_grad():
            self.graph_conv.lin.weight.zero_()
            glorot_(self.graph_conv.lin.weight[:, :continuous_dim], continuous_dim, continuous_dim, generator)
        self.decoder_hidden = _dense(continuous_dim, hidden, generator)
        self.decoder_out = _dense(hidden, n_features, generator)
        self.discriminator_binary = _dense(n_bits, 1, generator)
        self.discriminator_continuous = _dense(continuous_dim, 1, generator)

    def encoder_parameters(self) -> list[nn.Parameter]:
        """What encoding needs: the hidden layer and the binary bottleneck's layer."""
        return [*self.encoder_hidden.parameters(), *self.binary_head.parameters()]

    def actor_parameters(self) -> list[nn.Parameter]:
        modules = (self.encoder_hidden, self.binary_head, self.continuous_head, self.graph_conv,
                   self.decoder_hidden, self.decoder_out)
        return [p for module in modules for p in module.parameters()]

    def critic_parameters(self) -> list[nn.Parameter]:
        return [*self.discriminator_binary.parameters(), *self.discriminator_continuous.parameters()]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activation of the binary bottleneck (n, r): the code is ``logits >= 0``."""
        return self.binary_head(F.relu(self.encoder_hidden(x)))

    def twin_bottleneck(self, b: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``σ(D^-½ A D^-½ ([y, 1] W))`` with ``A = hamming_affinity(b)`` (n, c)."""
        adjacency = hamming_affinity(b, self.graph_power)
        y1 = torch.cat([y, torch.ones(y.shape[0], 1, dtype=y.dtype, device=y.device)], dim=1)
        return torch.sigmoid(self.graph_conv(y1, adjacency, add_loop=False).squeeze(0))

    def forward(self, x: torch.Tensor, threshold: torch.Tensor):
        """``(b, t, x̂)``: binary bottleneck, twin-bottleneck output and reconstruction of batch ``x``."""
        hidden = F.relu(self.encoder_hidden(x))
        b = DoublyStochasticNeuron.apply(self.binary_head(hidden), threshold)
        y = torch.sigmoid(self.continuous_head(hidden))
        t = self.twin_bottleneck(b, y)
        x_hat = self.decoder_out(F.relu(self.decoder_hidden(t)))
        if self.output == "relu":
            x_hat = F.relu(x_hat)
        return b, t, x_hat


def adversarial_loss(discriminator: nn.Linear, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """``mean BCE(D(real), 1) + mean BCE(D(fake), 0)`` for a one-layer sigmoid discriminator ``D``."""
    real_logit, fake_logit = discriminator(real), discriminator(fake)
    return (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
            + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))


def tbh_losses(net: TBHNet, x: torch.Tensor, threshold: torch.Tensor, prior_binary: torch.Tensor,
               prior_continuous: torch.Tensor) -> dict[str, torch.Tensor]:
    """The authors' losses on batch ``x`` (module docstring): ``actor``, ``critic``,
    ``reconstruction`` (½ Σ over rows and dimensions), ``adv_binary``, ``adv_continuous``."""
    b, t, x_hat = net(x, threshold)
    reconstruction = 0.5 * (x_hat - x).pow(2).sum()
    adv_binary = adversarial_loss(net.discriminator_binary, prior_binary, b)
    adv_continuous = adversarial_loss(net.discriminator_continuous, prior_continuous, t)
    return {
        "actor": reconstruction - adv_binary - adv_continuous,
        "critic": adv_binary + adv_continuous,
        "reconstruction": reconstruction,
        "adv_binary": adv_binary,
        "adv_continuous": adv_continuous,
    }


def sample_priors(rows: int, n_bits: int, continuous_dim: int, generator: torch.Generator):
    """Bernoulli(0.5) binary vectors (rows, r) and U(0, 1) vectors (rows, c), as the authors draw them."""
    prior_binary = (torch.rand(rows, n_bits, generator=generator) >= 0.5).float()
    return prior_binary, torch.rand(rows, continuous_dim, generator=generator)


class BatchStream:
    """Consecutive ``batch_size`` rows of a stream of fresh permutations of ``range(n)`` (the authors'
    ``repeat().shuffle().batch()``: every batch is full, an epoch's tail joins the next epoch's head)."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.buffer = torch.empty(0, dtype=torch.long)

    def next(self) -> torch.Tensor:
        while self.buffer.numel() < self.batch_size:
            self.buffer = torch.cat([self.buffer, torch.randperm(self.n, generator=self.generator)])
        index, self.buffer = self.buffer[: self.batch_size], self.buffer[self.batch_size:]
        return index


@dataclass
class TBHFit:
    """The trained encoder as float32 arrays (``x -> relu(x W1 + b1) W2 + b2``), the sizes of the parts
    not needed to encode, and per-epoch curves."""

    hidden_weight: np.ndarray
    hidden_bias: np.ndarray
    code_weight: np.ndarray
    code_bias: np.ndarray
    decoder_parameters: int
    discriminator_parameters: int
    history: dict[str, list[float]] = field(default_factory=dict)


def train_tbh(
    X: np.ndarray,
    n_bits: int,
    *,
    hidden: int,
    continuous_dim: int,
    graph_power: float,
    output: str,
    xi: str,
    lr: float,
    batch_size: int,
    n_iter: int,
    seed: int,
    device: str,
) -> TBHFit:
    """Train TBH on ``X`` (n × d, float32) for ``n_iter`` steps on batches of ``batch_size`` rows.

    Each step draws the batch, ξ (`methods.sgh_model.sample_thresholds`) and the prior samples from one
    CPU generator seeded with ``seed`` (the initial weights come from it first), computes both losses on
    one forward pass and takes one Adam step for the actor and one for the critic (both at ``lr``).
    ``history`` holds, per block of ``⌈n / batch_size⌉`` steps (one epoch's worth of rows), the mean
    over its steps of ``actor``, ``critic``, ``reconstruction`` (divided by the batch size: per row),
    ``adv_binary`` and ``adv_continuous``.
    """
    dev = resolve_device(device)
    generator = cpu_generator(seed)
    X = np.ascontiguousarray(X, dtype=np.float32)
    n, d = X.shape
    net = TBHNet(d, n_bits, hidden=hidden, continuous_dim=continuous_dim, graph_power=graph_power, output=output,
                 generator=generator).to(dev)
    data = torch.from_numpy(X).to(dev)
    actor_params, critic_params = net.actor_parameters(), net.critic_parameters()
    actor_opt = torch.optim.Adam(actor_params, lr=lr)
    critic_opt = torch.optim.Adam(critic_params, lr=lr)
    stream = BatchStream(n, batch_size, generator)

    block = max(1, math.ceil(n / batch_size))
    history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}
    sums = torch.zeros(len(HISTORY_KEYS), device=dev)
    steps_in_block = 0
    for step in tqdm(range(n_iter), desc="tbh", unit="it", disable=None, leave=False):
        index = stream.next()
        threshold = sample_thresholds(xi, (batch_size, n_bits), generator).to(dev)
        prior_binary, prior_continuous = (s.to(dev) for s in sample_priors(batch_size, n_bits, continuous_dim,
                                                                           generator))
        losses = tbh_losses(net, data[index.to(dev)], threshold, prior_binary, prior_continuous)
        # Two tapes on one forward pass, as the authors' train_step: each loss reaches only its own side.
        actor_grads = torch.autograd.grad(losses["actor"], actor_params, retain_graph=True)
        critic_grads = torch.autograd.grad(losses["critic"], critic_params)
        for params, grads in ((actor_params, actor_grads), (critic_params, critic_grads)):
            for p, g in zip(params, grads):
                p.grad = g
        actor_opt.step()
        critic_opt.step()
        values = torch.stack([losses[key].detach() for key in HISTORY_KEYS])
        values[HISTORY_KEYS.index("reconstruction")] /= batch_size
        sums += values
        steps_in_block += 1
        if steps_in_block == block or step == n_iter - 1:
            for key, value in zip(HISTORY_KEYS, (sums / steps_in_block).tolist()):
                history[key].append(float(value))
            log_epoch("tbh", len(history["actor"]), history)
            sums.zero_()
            steps_in_block = 0

    def numpy(p: torch.Tensor) -> np.ndarray:
        return p.detach().cpu().numpy().astype(np.float32)

    encoder = {id(p) for p in net.encoder_parameters()}
    decoder = sum(p.numel() for p in actor_params if id(p) not in encoder)
    return TBHFit(
        hidden_weight=numpy(net.encoder_hidden.weight.T),
        hidden_bias=numpy(net.encoder_hidden.bias),
        code_weight=numpy(net.binary_head.weight.T),
        code_bias=numpy(net.binary_head.bias),
        decoder_parameters=int(decoder),
        discriminator_parameters=int(sum(p.numel() for p in critic_params)),
        history=history,
    )
