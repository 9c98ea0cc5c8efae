"""Torch side of LAGNH (Cui et al., ACM MM 2021): network, training loop and the two query encoders.

Imported only inside `methods.lagnh`'s ``fit``/``project``, so that reading LAGNH's metadata never
imports torch or torch_geometric. Equations follow the authors' code (``christinecui/LAGNH``); see
`methods.lagnh` for the contract and where (and why) an option departs from it.

For a batch of ``n`` items with features ``X`` (n, d) and multi-hot tags ``P`` (n, T):

    u_i = W_v x_i + b_v,   t_i = W_t p_i + b_t                          (both to embed_dim)
    a_ij = relu(cos(u_i, t_j)),   â_i = a_i / max(||a_i||_2, 1e-12)     (row L2, not softmax)
    f_i = u_i + Σ_j â_ij t_j
    S_ij = exp(-||f_i - f_j||² / (2σ²)) + w · p_i·p_j,   Â = D⁻¹ S        (D = diag of row sums)
    H = relu(Â · drop(F) · W1),   Z = Â · drop(H) · W2,   C = Z W_c + b_c
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import DenseGCNConv

from hashbench.methods._torch_device import resolve_device
from hashbench.methods.base import log_epoch

# F.normalize's default floor, as in the authors' row normalisations.
_EPS = 1e-12


# ----------------------------------------------------------------------------- building blocks


def cross_modal_attention(u: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``f = u + â t`` with ``â`` the row-L2-normalised ``relu(cos(u_i, t_j))`` (n × n across the batch)."""
    a = F.relu(F.normalize(u, dim=1) @ F.normalize(t, dim=1).T)
    return u + F.normalize(a, p=2, dim=1) @ t


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||a_i - b_j||²`` by the Gram expansion, clipped at 0 (as the authors' ``affinity_eculi_gpu``)."""
    d2 = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return d2.clamp_min(0.0)


def bandwidth(d2: torch.Tensor, sigma: float | str, median_fraction: float = 1.0) -> torch.Tensor:
    """``σ²`` of the Gaussian kernel ``exp(-d² / (2σ²))`` for the square distance matrix ``d2``.

    A number gives ``σ² = sigma²`` (the authors divide by ``theta = 2``, i.e. ``sigma = 1``).
    ``"median"`` gives ``σ² = median_fraction · median_{i≠j} d²_ij`` of this batch, held constant for
    the gradient (at fraction 1 a pair at the median distance gets weight ``e^{-1/2}``, at 0.1
    ``e^{-5}``); ``median_fraction`` when the batch has one item.
    """
    if sigma != "median":
        return torch.tensor(float(sigma) ** 2, dtype=d2.dtype, device=d2.device)
    n = d2.shape[0]
    if n < 2:
        return torch.full((), float(median_fraction), dtype=d2.dtype, device=d2.device)
    off = ~torch.eye(n, dtype=torch.bool, device=d2.device)
    # a zero median (duplicates) would divide by zero; the floor keeps S finite with S_ij = 1 for them
    return (d2.detach()[off].median() * float(median_fraction)).clamp_min(_EPS)


NEGLIGIBLE_KERNEL = 1e-12  # see semantic_graph


def semantic_graph(
    f: torch.Tensor, sigma: float | str, tag_graph: torch.Tensor | None = None, median_fraction: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-stochastic ``Â = D⁻¹ (exp(-||f_i - f_j||²/(2σ²)) + tag_graph)`` and ``σ²``.

    The diagonal distance is set to exactly 0 (``S_ii = 1``): the Gram expansion leaves rounding
    noise there that grows with ``||f||²``. Kernel values below `NEGLIGIBLE_KERNEL` count as 0 (a
    deviation below float32 resolution, made for speed: see the comment in the body).
    """
    n = f.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=f.device)
    d2 = squared_distances(f, f).masked_fill(eye, 0.0)
    sigma2 = bandwidth(d2, sigma, median_fraction)
    S = torch.exp(-d2 / (2.0 * sigma2))
    # Kernel values below NEGLIGIBLE_KERNEL are set to 0: every row holds S_ii = 1, so they cannot move a
    # float32 result (resolution 6e-8) by more than n_batch * 1e-12; left in, they and their gradients
    # (S_ij times an upstream gradient) fall into the subnormal range, where CPU arithmetic is many times
    # slower: a LAGNH epoch on EfficientNet features took 2.7x as long (measured, one thread).
    S = S.masked_fill(S < NEGLIGIBLE_KERNEL, 0.0)
    if tag_graph is not None:
        S = S + tag_graph
    return F.normalize(S, p=1, dim=1), sigma2


def tag_inner_products(P: torch.Tensor) -> torch.Tensor:
    """``relu(P Pᵀ)``: shared tag counts, the authors' tag graph (``affinity_cos_gpu(P, P)``, flag=True)."""
    return F.relu(P @ P.T)


def reconstruction_target(kind: str, P: torch.Tensor | None, X: torch.Tensor) -> torch.Tensor:
    """Target of the similarity-graph reconstruction loss for one batch.

    ``"raw"``: ``relu(P Pᵀ)`` (the authors; exceeds 1 for items sharing several tags);
    ``"clipped"``: ``min(1, P Pᵀ)``; ``"cosine"``: ``relu(cos(p_i, p_j))``;
    ``"features"``: ``relu(cos(x_i, x_j))`` (the no-auxiliary-semantics ablation, no tags).
    """
    if kind == "features":
        Xn = F.normalize(X, dim=1)
        return F.relu(Xn @ Xn.T)
    if kind == "raw":
        return tag_inner_products(P)
    if kind == "clipped":
        return tag_inner_products(P).clamp_max(1.0)
    if kind == "cosine":
        Pn = F.normalize(P, dim=1)
        return F.relu(Pn @ Pn.T)
    raise ValueError(f"unknown reconstruction target {kind!r}")


# ----------------------------------------------------------------------------- modules


class LAGNHNet(nn.Module):
    """The trained encoder: ``x, p -> (z, classifier logits, Â)``.

    Args:
        attention: use the tag branch ``t = W_t p + b_t`` and the cross-modal attention (else ``f = u``).
        classifier: keep the linear head ``C = Z W_c + b_c`` on the tags.

    The two graph convolutions are torch_geometric `DenseGCNConv` layers without bias, called with
    ``add_loop=False``. On a row-stochastic ``Â`` their symmetric normalisation
    ``D^-1/2 Â D^-1/2`` with ``D = diag(max(1, Â 1))`` is the identity (every degree is 1), so each
    layer computes ``Â X W`` with LAGNH's own ``D⁻¹ S`` normalisation (checked in the tests).
    Their weights get the authors' Xavier-normal initialisation; the linear layers keep torch's default.
    """

    def __init__(
        self,
        n_features: int,
        n_tags: int,
        n_bits: int,
        *,
        embed_dim: int = 512,
        hidden: int = 1024,
        dropout: float = 0.5,
        attention: bool = True,
        classifier: bool = True,
    ) -> None:
        super().__init__()
        self.dropout = float(dropout)
        # Dropout masks are drawn from this CPU generator (set by `train_lagnh`) and moved to the device, so a
        # seed gives the same masks on every device, as SGH's and DeepBit's draws; None: torch's own dropout.
        self.mask_generator: torch.Generator | None = None
        self.img = nn.Linear(n_features, embed_dim)
        self.tag = nn.Linear(n_tags, embed_dim) if attention else None
        self.gc1 = DenseGCNConv(embed_dim, hidden, bias=False)
        self.gc2 = DenseGCNConv(hidden, n_bits, bias=False)
        self.classifier = nn.Linear(n_bits, n_tags) if classifier else None
        nn.init.xavier_normal_(self.gc1.lin.weight)
        nn.init.xavier_normal_(self.gc2.lin.weight)

    def fuse(self, x: torch.Tensor, p: torch.Tensor | None) -> torch.Tensor:
        """The attentive feature ``f`` of each item of the batch (``u`` without the tag branch)."""
        u = self.img(x)
        if self.tag is None:
            return u
        return cross_modal_attention(u, self.tag(p))

    def propagate(self, f: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        """``Z = Â · drop(relu(Â · drop(F) · W1)) · W2`` (dropout only in training mode)."""
        h = F.relu(self.gc1(self._drop(f), adj, add_loop=False)[0])
        return self.gc2(self._drop(h), adj, add_loop=False)[0]

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        """Inverted dropout (``x · keep / (1 - p)``, keep ~ Bernoulli(1 - p)) in training mode."""
        if not self.training or self.dropout == 0.0:
            return x
        if self.mask_generator is None:
            return F.dropout(x, self.dropout, True)
        keep = torch.rand(x.shape, generator=self.mask_generator) >= self.dropout
        return x * keep.to(x.device, x.dtype) / (1.0 - self.dropout)

    def forward(
        self,
        x: torch.Tensor,
        p: torch.Tensor | None,
        sigma: float | str = 1.0,
        tag_graph: torch.Tensor | None = None,
        median_fraction: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        f = self.fuse(x, p)
        adj, _ = semantic_graph(f, sigma, tag_graph, median_fraction)
        z = self.propagate(f, adj)
        logits = self.classifier(z) if self.classifier is not None else None
        return z, logits, adj


class Discriminator(nn.Sequential):
    """``n_bits -> 64 -> 32 -> 1`` with ReLU, outputs logits (ARGA's discriminator)."""

    def __init__(self, n_bits: int) -> None:
        super().__init__(nn.Linear(n_bits, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1))


def count_parameters(module: nn.Module | None) -> int:
    return 0 if module is None else int(sum(p.numel() for p in module.parameters()))


# ----------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainConfig:
    """Resolved training settings (see `methods.lagnh.LAGNH` for their meaning and defaults)."""

    epochs: int
    batch_size: int
    g_steps: int
    lr: float
    adv_weight: float
    lamda: float
    alpha: float
    beta: float
    sigma: float | str
    median_fraction: float
    rec_target: str  # "raw" | "clipped" | "cosine" | "features"
    tag_graph_weight: float
    adversarial: bool
    early_stop_patience: int  # 0: off
    early_stop_tol: float
    seed: int


def _to_tensor(a: np.ndarray | None, device: torch.device) -> torch.Tensor | None:
    if a is None:
        return None
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)


def _rng_devices(device: torch.device) -> list[int]:
    if device.type == "cuda":
        return [device.index if device.index is not None else torch.cuda.current_device()]
    return []


class _EpochMeans:
    """Sums of per-step scalars kept on the device (one host sync per epoch, not per step)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, key: str, value: torch.Tensor) -> None:
        value = value.detach()
        self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.counts[key] = self.counts.get(key, 0) + 1

    def means(self) -> dict[str, float]:
        return {k: float(v) / self.counts[k] for k, v in self.sums.items()}


def train(
    X: np.ndarray,
    P: np.ndarray | None,
    n_bits: int,
    config: TrainConfig,
    *,
    embed_dim: int,
    hidden: int,
    dropout: float,
    attention: bool,
    classifier: bool,
    device: torch.device,
    progress: bool | None = None,
) -> tuple[LAGNHNet, dict[str, list[float]], dict[str, float]]:
    """Train LAGNH as the authors' ``train_ARGA``: per shuffled batch one discriminator step, then
    ``g_steps`` generator steps, each on a fresh forward pass (new dropout masks), Adam for both.

    Losses (BCE with logits, means over elements):
    ``L_D = BCE(D(ε), 1) + BCE(D(z), 0)`` with ``ε ~ N(0, I)``;
    ``L_G = adv·BCE(D(z), 1) + λ·MSE(z, sign z) + α·SoftMargin(C, P) + β·MSE(relu(z̄ z̄ᵀ), target)``,
    ``z̄`` the row-L2-normalised ``z``. The discriminator's forward pass on ``z`` runs without a graph
    for the generator (the authors backpropagate it into the generator, then discard those gradients).

    Returns the network (on the CPU, eval mode), the per-epoch history and facts for ``run_info``.
    """
    from tqdm import tqdm

    n = X.shape[0]
    with torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(config.seed)
        net = LAGNHNet(
            X.shape[1], 0 if P is None else P.shape[1], n_bits,
            embed_dim=embed_dim, hidden=hidden, dropout=dropout, attention=attention, classifier=classifier,
        ).to(device)
        disc = Discriminator(n_bits).to(device) if config.adversarial else None
        shuffle_gen = torch.Generator().manual_seed(config.seed)
        # CPU generators for the prior's samples and the dropout masks: the same draws on every device
        prior_gen = torch.Generator().manual_seed(config.seed + 1)
        net.mask_generator = torch.Generator().manual_seed(config.seed + 2)

        # Whole training set on the device when it fits comfortably; else one batch at a time.
        resident = device.type == "cpu" or X.nbytes < 2**30
        X_all = _to_tensor(X, device if resident else torch.device("cpu"))
        P_all = _to_tensor(P, device if resident else torch.device("cpu"))

        opt_g = torch.optim.Adam(net.parameters(), lr=config.lr)
        opt_d = torch.optim.Adam(disc.parameters(), lr=config.lr) if disc is not None else None
        soft_margin = nn.MultiLabelSoftMarginLoss()

        history: dict[str, list[float]] = {}
        best, waited, epochs_run = math.inf, 0, 0
        net.train()
        bar = tqdm(range(config.epochs), desc="lagnh", disable=None if progress is None else not progress, leave=False)
        for _ in bar:
            acc = _EpochMeans()
            perm = torch.randperm(n, generator=shuffle_gen)
            for start in range(0, n, config.batch_size):
                idx = perm[start:start + config.batch_size].to(X_all.device)
                xb = X_all[idx].to(device, non_blocking=True)
                pb = P_all[idx].to(device, non_blocking=True) if P_all is not None else None
                tag_graph = None
                if config.tag_graph_weight and pb is not None:
                    tag_graph = config.tag_graph_weight * tag_inner_products(pb)
                target = reconstruction_target(config.rec_target, pb, xb) if config.beta else None

                if disc is not None:
                    with torch.no_grad():
                        z_fake, _, _ = net(xb, pb, config.sigma, tag_graph, config.median_fraction)
                    eps = torch.randn(z_fake.shape, generator=prior_gen).to(device)
                    d_real, d_fake = disc(eps), disc(z_fake)
                    loss_d = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + \
                        F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
                    opt_d.zero_grad(set_to_none=True)
                    loss_d.backward()
                    opt_d.step()
                    acc.add("loss_d", loss_d)

                for step in range(config.g_steps):
                    z, logits, adj = net(xb, pb, config.sigma, tag_graph, config.median_fraction)
                    loss = F.mse_loss(z, torch.sign(z)) * config.lamda
                    acc.add("loss_quant", loss)
                    if disc is not None:
                        d_out = disc(z)
                        adv = F.binary_cross_entropy_with_logits(d_out, torch.ones_like(d_out)) * config.adv_weight
                        acc.add("loss_adv", adv)
                        loss = loss + adv
                    if logits is not None:
                        cls = soft_margin(logits, pb) * config.alpha
                        acc.add("loss_cls", cls)
                        loss = loss + cls
                    if target is not None:
                        zn = F.normalize(z, dim=1)
                        rec = F.mse_loss(F.relu(zn @ zn.T), target) * config.beta
                        acc.add("loss_rec", rec)
                        loss = loss + rec
                    opt_g.zero_grad(set_to_none=True)
                    loss.backward()
                    opt_g.step()
                    acc.add("loss_g", loss)
                    if step == 0:
                        # Â does not depend on dropout: one reading per batch is the batch's graph
                        m = adj.shape[0]
                        self_weight = adj.detach().diagonal().mean()
                        acc.add("graph_self_weight", self_weight)
                        acc.add("graph_offdiag_mean", (1.0 - self_weight) / max(m - 1, 1))
            epochs_run += 1
            for key, value in acc.means().items():
                history.setdefault(key, []).append(value)
            log_epoch("lagnh", epochs_run, history)
            monitor = history["loss_g"][-1]
            if config.early_stop_patience > 0:
                if monitor < best - config.early_stop_tol * abs(best) or not math.isfinite(best):
                    best, waited = monitor, 0
                else:
                    waited += 1
                    if waited >= config.early_stop_patience:
                        break
        bar.close()

    info = {
        "epochs_run": epochs_run,
        "discriminator_parameters": count_parameters(disc),
    }
    net.mask_generator = None  # training state only; the returned network is deterministic (eval mode)
    return net.cpu().eval(), history, info


# ----------------------------------------------------------------------------- encoding


@torch.no_grad()
def encode_transductive(
    net: LAGNHNet,
    X: np.ndarray,
    P: np.ndarray | None,
    *,
    sigma: float | str,
    tag_graph_weight: float,
    batch_size: int,
    device: torch.device,
    median_fraction: float = 1.0,
) -> np.ndarray:
    """The authors' test-time encoding: consecutive batches of ``batch_size`` rows in the given order,
    each forming its own attention and graph (the last batch may be smaller)."""
    net = net.to(device).eval()
    out = []
    for start in range(0, X.shape[0], batch_size):
        xb = _to_tensor(X[start:start + batch_size], device)
        pb = _to_tensor(P[start:start + batch_size], device) if P is not None else None
        tag_graph = tag_graph_weight * tag_inner_products(pb) if tag_graph_weight and pb is not None else None
        z, _, _ = net(xb, pb, sigma, tag_graph, median_fraction)
        out.append(z.cpu().numpy())
    net.cpu()
    return np.concatenate(out)


@dataclass
class AnchorState:
    """What the anchor set contributes to every query, computed once (eval mode, anchors alone).

    ``T``: tag embeddings ``t_a`` (m, e) or None; ``F``: fused ``f_a`` (m, e); ``FW1``: ``f_a W1``
    (m, hidden); ``HW2``: ``h_a W2`` (m, bits) with ``H = relu(Â_AA F W1)``; ``P``: tags (m, T) or
    None; ``sigma2``: the kernel's ``σ²`` (for ``"median"``, the anchors' median).
    """

    T: torch.Tensor | None
    F: torch.Tensor
    FW1: torch.Tensor
    HW2: torch.Tensor
    P: torch.Tensor | None
    sigma2: torch.Tensor


def anchor_state(
    net: LAGNHNet, XA: torch.Tensor, PA: torch.Tensor | None, sigma: float | str, tag_graph_weight: float,
    median_fraction: float = 1.0,
) -> AnchorState:
    u = net.img(XA)
    T = net.tag(PA) if net.tag is not None else None
    f = cross_modal_attention(u, T) if T is not None else u
    tag_graph = tag_graph_weight * tag_inner_products(PA) if tag_graph_weight and PA is not None else None
    adj, sigma2 = semantic_graph(f, sigma, tag_graph, median_fraction)
    H = F.relu(net.gc1(f, adj, add_loop=False)[0])
    return AnchorState(T=T, F=f, FW1=net.gc1.lin(f), HW2=net.gc2.lin(H), P=PA, sigma2=sigma2)


def anchored_rows(
    net: LAGNHNet, state: AnchorState, x: torch.Tensor, p: torch.Tensor | None, tag_graph_weight: float
) -> torch.Tensor:
    """``z_q`` of each query ``q`` as the last row of the graph on ``[anchors; q]`` (eval mode).

    The anchors' rows are those of the anchors alone, so ``q`` reads the anchors and itself and
    nothing reads ``q``: with ``c_qa = relu(cos(u_q, t_a))``, ``c_qq = relu(cos(u_q, t_q))``,

        f_q  = u_q + (Σ_a c_qa t_a + c_qq t_q) / ||(c_qA, c_qq)||_2
        s_qa = exp(-||f_q - f_a||² / (2σ²)) + w p_q·p_a,   s_qq = 1 + w p_q·p_q
        â_q· = s_q· / (Σ_a s_qa + s_qq)
        h_q  = relu(Σ_a â_qa f_a W1 + â_qq f_q W1)
        z_q  = Σ_a â_qa h_a W2 + â_qq h_q W2

    Every row depends only on its own query, so a batch of queries is a few matrix products.
    """
    u = net.img(x)
    if net.tag is not None:
        t = net.tag(p)
        un = F.normalize(u, dim=1)
        c_anchor = F.relu(un @ F.normalize(state.T, dim=1).T)
        c_self = F.relu((un * F.normalize(t, dim=1)).sum(1, keepdim=True))
        norm = torch.sqrt((c_anchor * c_anchor).sum(1, keepdim=True) + c_self * c_self).clamp_min(_EPS)
        f = u + (c_anchor @ state.T + c_self * t) / norm
    else:
        f = u
    s_anchor = torch.exp(-squared_distances(f, state.F) / (2.0 * state.sigma2))
    s_anchor = s_anchor.masked_fill(s_anchor < NEGLIGIBLE_KERNEL, 0.0)  # as `semantic_graph`: no subnormals
    s_self = torch.ones((f.shape[0], 1), dtype=f.dtype, device=f.device)
    if tag_graph_weight and p is not None:
        s_anchor = s_anchor + tag_graph_weight * F.relu(p @ state.P.T)
        s_self = s_self + tag_graph_weight * F.relu((p * p).sum(1, keepdim=True))
    den = (s_anchor.sum(1, keepdim=True) + s_self).clamp_min(_EPS)
    a_anchor, a_self = s_anchor / den, s_self / den
    h = F.relu(a_anchor @ state.FW1 + a_self * net.gc1.lin(f))
    return a_anchor @ state.HW2 + a_self * net.gc2.lin(h)


@torch.no_grad()
def encode_anchored(
    net: LAGNHNet,
    X: np.ndarray,
    P: np.ndarray | None,
    XA: np.ndarray,
    PA: np.ndarray | None,
    *,
    sigma: float | str,
    tag_graph_weight: float,
    chunk: int,
    device: torch.device,
    median_fraction: float = 1.0,
) -> np.ndarray:
    """`anchored_rows` for every row of ``X``, ``chunk`` rows at a time (the chunk only bounds memory)."""
    net = net.to(device).eval()
    state = anchor_state(net, _to_tensor(XA, device), _to_tensor(PA, device), sigma, tag_graph_weight,
                         median_fraction)
    out = []
    for start in range(0, X.shape[0], chunk):
        xb = _to_tensor(X[start:start + chunk], device)
        pb = _to_tensor(P[start:start + chunk], device) if P is not None else None
        out.append(anchored_rows(net, state, xb, pb, tag_graph_weight).cpu().numpy())
    net.cpu()
    return np.concatenate(out)
