"""Stochastic Generative Hashing (SGH), Dai, Guo, Kumar, He & Song, ICML 2017.

A linear Bernoulli encoder ``q(h | x) = Π_k Bern(h_k; σ(x W + b)_k)`` and a linear Gaussian generative
model ``p(x | h) = N((h U) ⊙ |s| + m, ρ² I)`` are trained together by minimising the description length
(the negative ELBO, up to constants)

    L = ½ Σ ||x̂ - x||² + α Σ CE(x W + b, h) + β (½||U||² + ½||W||²),   h = 1[σ(x W + b) >= ξ],

through the doubly stochastic neuron and its distributional derivative (a straight-through through the
sigmoid; `methods.sgh_model` has the exact forward and backward). A query's code is
``1[σ(x W + b) > 0.5]``, i.e. ``z = x W + b``.

Defaults are the authors' MNIST demo (``doubling/Stochastic_Generative_Hashing``,
``sgh_notebook/stochastic_hashing.py``): α = β = 1e-3, Adam at 5e-3 halved every 2,000 iterations
(the demo's intent; its code trains at a constant 1e-2, see below), batches of 500 rows drawn with replacement, 5,000 iterations, initial ``s`` = the
per-dimension variance and ``m`` = the mean. Adaptations to other inputs, each a parameter:

* **Iteration counts scale with the training-set size.** The demo's 5,000 × 500 rows on MNIST's 60,000
  are ``epochs = 5000·500/60000 ≈ 41.7`` passes, its halving every ``2000·500/60000 ≈ 16.7`` passes.
  On ``n`` rows SGH runs ``round(epochs · n / batch_size)`` steps and halves the rate every
  ``round(halve_every_epochs · n / batch_size)`` steps (at least one of each).
* **The learning rate: the demo's intent, not its effect.** The TF code builds Adam with 1e-2, then
  halves a Python float ``if i % 2000 == 0`` (from ``i = 0``), which never reaches the optimiser: the
  released code trains at a constant 1e-2 (``lr=1e-2, halve_every_epochs=None``). The halving's literal
  intent starts at 5e-3 (halved at ``i = 0``) and halves every 2,000 iterations: the default here
  (``lr=5e-3``, ``halve_every_epochs`` ≈ 16.7), chosen on validation splits drawn from the training
  split only (``scripts/sgh_lr_study.py``: 1,000 of the 5,000 training items as queries, the other 4,000
  as fitting set and database, 32 bits, mAP@all, mean of seeds 0-2): CIFAR-10 0.2778 against 0.2687
  for the constant rate (and 0.2696 for this harness's former default, the halving started from 1e-2,
  which neither the code nor its intent does); Fashion-MNIST 0.5002 against 0.4842.
* **Standardisation** (``standardize=True``): each input dimension is centred and divided by its
  training standard deviation (1 where it is below 1e-7) before training. The demo feeds MNIST pixels
  in [0, 1], for which ``W ~ N(0, 1/d)`` gives logits of order 1; CNN features have no fixed scale and
  large values saturate the sigmoid, which stops the straight-through gradient. The standardisation is
  folded into the stored encoder (``projection_``, ``offset_``), so encoding costs one affine map.
* **ξ during training.** ``xi="stochastic"`` draws ξ ~ U(0, 1) (the paper); ``xi="deterministic"``
  fixes ξ = 0.5 (the released demo).

Defaults ``xi="stochastic"`` and ``standardize=True`` by measurement: 64 bits, mAP over the whole
database of a stable Hamming ranking, same class = relevant, mean of seeds 0 and 1, all other
hyper-parameters at their defaults (scripts/sgh_xi_study.py, scripts/deep_baselines_cifar_study.py):

    ==========================================  ===========  ===========  ===========  ===========
    data: training rows / database / queries     stochastic   determin.    stochastic   determin.
                                                 standardised standardised raw          raw
    ==========================================  ===========  ===========  ===========  ===========
    CIFAR-10 EfficientNet-Lite0 (5,000/=/1,000)  **0.243**    0.229        0.227        0.212
    Fashion-MNIST pixels (5,000/10,000/1,000)    0.471        0.442        **0.488**    0.463
    sklearn digits pixels (1,500/=/297)          0.590        0.537        **0.641**    0.611
    ==========================================  ===========  ===========  ===========  ===========

The stochastic ξ wins everywhere (+0.014 to +0.053); standardising wins on CNN features, where it is
also far steadier across seeds (0.243/0.243 against 0.246/0.208), but loses on [0, 1] pixels, the
demo's input, for which ``standardize=False`` is the faithful setting. (CIFAR-10: the lossy JPEG
copy of the images, features at the extractor's 96 px input.) Not adopted, for the record: on the
same CIFAR-10 features ``lr=1e-3`` gives 0.291 (seed 0) against 0.243 at the demo's 1e-2, as the
dossier anticipated for CNN features (measured before the rate became the demo's intent, 5e-3; a
rate outside the authors' code is left to a tuning sweep on a validation split).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hashbench.methods._affine import affine
from hashbench.methods.base import Hasher
from hashbench.methods.constraints import TORCH_SEED_MAX, DeviceName, Integral, Interval, Real, StrOptions
from hashbench.methods.registry import register_method

# The authors' demo: 5,000 iterations and a halving every 2,000, batches of 500, MNIST's 60,000 rows.
DEMO_EPOCHS = 5000 * 500 / 60000
DEMO_HALVE_EVERY_EPOCHS = 2000 * 500 / 60000
# How ξ is drawn while training (the module docstring); `methods.sgh_model` reads it from here.
XI_MODES = ("stochastic", "deterministic")


def iterations_for(epochs: float, n_rows: int, batch_size: int) -> int:
    """Steps that draw ``epochs · n_rows`` rows in batches of ``batch_size`` (at least one)."""
    return max(1, int(round(epochs * n_rows / batch_size)))


def standardisation(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation of ``X``; deviations below 1e-7 become 1."""
    mean = X.mean(axis=0, dtype=np.float64)
    std = X.std(axis=0, dtype=np.float64)
    return mean, np.where(std < 1e-7, 1.0, std)


@register_method
class SGH(Hasher):
    """SGH: ``z = x W' + b'``, the trained encoder with the input standardisation folded in.

    Args:
        n_bits: code length ``r``.
        seed: seeds the initial weights, the batches and ξ.
        xi: ``"stochastic"`` (ξ ~ U(0, 1), default) or ``"deterministic"`` (ξ = 0.5) while training.
        alpha: weight of the encoder's cross-entropy term (1e-3).
        beta: weight decay on ``U`` and ``W`` (1e-3).
        lr: Adam's initial learning rate (5e-3: the demo's intent, see the module docstring; 1e-2 with
            ``halve_every_epochs=None`` is what the released code does).
        batch_size: rows per step, drawn with replacement (500).
        epochs: passes over the training rows (≈ 41.7, the demo's; see the module docstring).
        halve_every_epochs: passes between learning-rate halvings (≈ 16.7); None keeps it constant.
        standardize: centre and scale each input dimension before training (True).
        device: ``"auto"`` (a GPU when present), ``"cpu"`` or ``"cuda[:k]"``.

    Fitted attributes: ``projection_`` (d, r) and ``offset_`` (r,) (the encoder in input units),
    ``decoder_`` (r, d), ``decoder_scale_`` (d,), ``decoder_shift_`` (d,) (the generative model, in
    standardised units; not needed to encode), ``input_mean_``, ``input_std_`` (d,) or None,
    ``n_iter_``, ``history_`` (per-epoch ``loss``, ``reconstruction``, ``encoder_ce``, ``lr``),
    ``resolved_params_`` (see `resolved_params`: ``iterations``, ``halve_every_iterations`` (None for a
    constant rate), ``device``).
    """

    name = "sgh"
    family = "deep"
    reference = (
        "B. Dai, R. Guo, S. Kumar, N. He, L. Song, Stochastic Generative Hashing, ICML 2017 "
        "(code: github.com/doubling/Stochastic_Generative_Hashing)"
    )
    execution_params = ("device",)
    conformance_params = {"epochs": 10.0, "halve_every_epochs": 4.0}
    # The rate and length of the schedule and the two regularisation weights of the demo.
    search_space = {"lr": {"low": 1e-3, "high": 3e-2, "log": True}, "epochs": {"low": 10.0, "high": 100.0},
                    "alpha": {"low": 1e-4, "high": 1e-2, "log": True}, "beta": {"low": 1e-4, "high": 1e-2, "log": True}}
    _parameter_constraints = {
        "seed": [Interval(Integral, 0, TORCH_SEED_MAX, closed="both")],
        "xi": [StrOptions(set(XI_MODES))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "beta": [Interval(Real, 0, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "epochs": [Interval(Real, 0, None, closed="neither")],
        "halve_every_epochs": [Interval(Real, 0, None, closed="neither"), None],
        "standardize": ["boolean"],
        "device": [DeviceName()],
    }

    def __init__(
        self,
        n_bits: int,
        *,
        seed: int = 0,
        xi: str = "stochastic",
        alpha: float = 1e-3,
        beta: float = 1e-3,
        lr: float = 5e-3,
        batch_size: int = 500,
        epochs: float = DEMO_EPOCHS,
        halve_every_epochs: float | None = DEMO_HALVE_EVERY_EPOCHS,
        standardize: bool = True,
        device: str = "auto",
    ) -> None:
        super().__init__(n_bits, seed=seed)
        self.xi = xi
        self.alpha = alpha
        self.beta = beta
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.halve_every_epochs = halve_every_epochs
        self.standardize = standardize
        self.device = device

    def _fit(self, X: np.ndarray) -> None:
        from hashbench.methods._torch_device import resolve_device
        from hashbench.methods.sgh_model import train_sgh

        device = str(resolve_device(self.device))
        n = X.shape[0]
        if self.standardize:
            mean, std = standardisation(X)
            # In the input's precision (float32 for features): one temporary of X's size, not a float64 one.
            train_X = ((X - mean.astype(X.dtype)) / std.astype(X.dtype)).astype(np.float32, copy=False)
        else:
            mean = std = None
            train_X = X
        batch_size = int(self.batch_size)
        n_iter = iterations_for(self.epochs, n, batch_size)
        halve_every = (
            None if self.halve_every_epochs is None else iterations_for(self.halve_every_epochs, n, batch_size)
        )
        fitted = train_sgh(
            train_X,
            int(self.n_bits),
            xi=self.xi,
            alpha=float(self.alpha),
            beta=float(self.beta),
            lr=float(self.lr),
            batch_size=batch_size,
            n_iter=n_iter,
            halve_every=halve_every,
            seed=int(self.seed),
            device=device,
        )
        weight = fitted.weight.astype(np.float64)
        bias = fitted.bias.astype(np.float64)
        if std is not None:
            # ((x - μ) / σ) W + b = x (W / σ) + (b - (μ / σ) W)
            projection = weight / std[:, None]
            offset = bias - (mean / std) @ weight
        else:
            projection, offset = weight, bias
        self.projection_, self.offset_ = projection, offset
        self.decoder_, self.decoder_scale_, self.decoder_shift_ = fitted.decoder, fitted.scale, fitted.shift
        self.input_mean_, self.input_std_ = mean, std
        self.n_iter_ = n_iter
        self.history_ = fitted.history
        self.resolved_params_ = {"iterations": n_iter, "halve_every_iterations": halve_every, "device": device}

    def _project(self, X: np.ndarray) -> np.ndarray:
        return affine(X, self.projection_, self.offset_)

    def n_parameters(self) -> int:
        """The encoder needed to encode: ``projection_`` (d × r) and ``offset_`` (r). The decoder is
        trained too; `run_info` reports its size as ``decoder_parameters``."""
        self._check_fitted()
        return int(self.projection_.size + self.offset_.size)

    def run_info(self) -> dict[str, Any]:
        self._check_fitted()
        return {"decoder_parameters": int(self.decoder_.size + self.decoder_scale_.size + self.decoder_shift_.size)}
