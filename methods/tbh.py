"""Auto-Encoding Twin-Bottleneck Hashing (TBH), Shen et al., CVPR 2020.

An auto-encoder on pre-extracted features with two bottlenecks: a binary one (the codes, through SGH's
stochastic neuron) and a continuous one. The binary codes of a batch define a graph
``A = (1 - Hamming/r)^1.4``; one graph convolution ``D^-½ A D^-½`` over it mixes the continuous
bottleneck of similar codes, and a decoder reconstructs the features from the result. Two
adversarial regularisers push the binary bottleneck towards Bernoulli(0.5) and the graph layer's
output towards U(0, 1). Exact forward, backward and losses: `methods.tbh_model`. A query's code is the
deterministic binary bottleneck ``1[σ(logits) > 0.5]``, i.e. ``z = relu(x W1 + b1) W2 + b2``, as the
authors' encoder computes it at test time (ξ = 0.5).

Defaults are the authors' (``ymcidence/TBH``, ``run_tbh.py``, ``train/tbh_train.py``) where the input
and the time budget allow: hidden width 1024, continuous bottleneck 512, graph exponent 1.4, ξ = 0.5, one
Adam per player. The authors' schedule (100,000 iterations of 400 rows at lr 1e-4) is the preset
``schedule="authors"``. Adaptations, each a parameter that a run records:

* **The input** is the harness's features (``d`` = 1,280 on CIFAR-10's default extractor), not the
  authors' 4,096-d VGG fc7; the first layer and the decoder's output take ``d`` from the data.
* **The schedule** ``schedule="cpu"`` (default): 1,500 iterations of 400 rows (the authors' batch) at lr
  4e-4 (600,000 rows, 1.5 % of the authors' 40 million), for the harness's budget (at most 2 minutes on two
  CPU cores at 64 bits on 5,000 × 1,280 features). Chosen on the harness's validation split of the training
  rows (README, "TBH as implemented"): ``bench tune`` (20 trials) found that TBH gains most from more rows
  per step and more steps, and of two schedules near its best trial this one was the steadier (64 bits,
  seeds 0-2: 0.4122 ± 0.0081 against 0.4101 ± 0.0491 for 1,200 × 400 at 1e-3 and 0.3255 ± 0.0237 for the
  former 600 × 100 at 3e-4).
* **The decoder's output** ``output="linear"`` (default) instead of the authors' ReLU
  (``output="relu"``). Within the short schedule, with the ReLU the reconstruction stayed above that of
  predicting the training mean (½||x̂ - x||² per row 403, against 359 for the mean and 540 for zeros, on
  CIFAR-10's features) and fell to 333 without it; validation mAP@1000 0.198 against 0.295, same
  schedule. The likely cause (not measured unit by unit): early in training the graph layer's output is
  nearly the same for every row of a batch (random codes give ``A_ij ≈ 0.38`` off the diagonal), so an
  output unit whose pre-activation starts negative is negative for every row and its ReLU passes no
  gradient to revive it.
* **ξ while training**: ``xi="deterministic"`` (0.5, the authors' code) or ``"stochastic"`` (U(0, 1),
  the line their code leaves commented out).
* A batch larger than the training set is cut to ``n`` rows (``resolved_params()["batch_size"]``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hashbench.methods.base import Hasher
from hashbench.methods.constraints import TORCH_SEED_MAX, DeviceName, Integral, Interval, Real, StrOptions
from hashbench.methods.registry import register_method
from hashbench.methods.sgh import XI_MODES

# Preset schedules; a preset fills ``iterations``, ``batch_size`` and ``lr`` left as None.
AUTHORS_ITERATIONS = 100_000
SCHEDULES: dict[str, dict[str, Any]] = {
    "authors": {"iterations": AUTHORS_ITERATIONS, "batch_size": 400, "lr": 1e-4},
    # Chosen on the validation split (module docstring). Earlier: 600 x 100 at 1e-3 (collapsed the codes at
    # 16 and 32 bits), then 600 x 100 at 3e-4 (README, "TBH as implemented").
    "cpu": {"iterations": 1500, "batch_size": 400, "lr": 4e-4},
}
OUTPUTS = ("relu", "linear")

_BLOCK_ROWS = 4096


@register_method
class TBH(Hasher):
    """TBH's encoder: ``z = relu(x W1 + b1) W2 + b2``, trained as the twin-bottleneck auto-encoder.

    Args:
        n_bits: code length ``r`` (the binary bottleneck's width).
        seed: seeds the initial weights, the batches, ξ and the prior samples.
        schedule: ``"cpu"`` (default: 1,500 iterations, batch 400, lr 4e-4) or ``"authors"`` (100,000
            iterations, batch 400, lr 1e-4); fills
            ``iterations``, ``batch_size`` and ``lr`` left as None.
        iterations: training steps (each one actor and one critic Adam step).
        batch_size: rows per step (= nodes of the code-driven graph).
        lr: Adam's learning rate, for the auto-encoder and the discriminators.
        hidden: width of the encoder's and the decoder's hidden layer (1024).
        continuous_dim: width of the continuous bottleneck (512).
        graph_power: exponent of the code-driven graph ``(1 - Hamming/r)^p`` (1.4).
        output: ``"linear"`` (default) or ``"relu"`` (authors): the decoder's output activation.
        xi: ``"deterministic"`` (ξ = 0.5, authors' code) or ``"stochastic"`` (ξ ~ U(0, 1)) while training.
        device: ``"auto"`` (a GPU when present), ``"cpu"`` or ``"cuda[:k]"``.

    Fitted attributes: ``hidden_weight_`` (d, hidden), ``hidden_bias_`` (hidden,), ``code_weight_``
    (hidden, r), ``code_bias_`` (r,) (the encoder), ``history_`` (per-epoch ``actor``, ``critic``,
    ``reconstruction`` per row, ``adv_binary``, ``adv_continuous``), ``fit_info_`` (sizes of the
    trained parts not needed to encode), ``resolved_params_`` (``iterations``, ``batch_size``, ``lr``
    as used, ``device``).
    """

    name = "tbh"
    family = "deep"
    reference = (
        "Y. Shen, J. Qin, J. Chen, M. Yu, L. Liu, F. Zhu, F. Shen, L. Shao, Auto-Encoding Twin-Bottleneck "
        "Hashing, CVPR 2020 (code: github.com/ymcidence/TBH)"
    )
    execution_params = ("device",)
    conformance_params = {"iterations": 20, "batch_size": 64, "hidden": 32, "continuous_dim": 16, "lr": 1e-3}
    # The schedule around the "cpu" preset (rate, steps, rows per step = nodes of the code graph).
    search_space = {"lr": {"low": 1e-4, "high": 3e-3, "log": True}, "iterations": {"low": 300, "high": 2400, "log": True},
                    "batch_size": {"choices": [100, 200, 400]}}
    _parameter_constraints = {
        "seed": [Interval(Integral, 0, TORCH_SEED_MAX, closed="both")],
        "schedule": [StrOptions(set(SCHEDULES))],
        "iterations": [Interval(Integral, 1, None, closed="left"), None],
        "batch_size": [Interval(Integral, 2, None, closed="left"), None],
        "lr": [Interval(Real, 0, None, closed="neither"), None],
        "hidden": [Interval(Integral, 1, None, closed="left")],
        "continuous_dim": [Interval(Integral, 1, None, closed="left")],
        "graph_power": [Interval(Real, 0, None, closed="neither")],
        "output": [StrOptions(set(OUTPUTS))],
        "xi": [StrOptions(set(XI_MODES))],
        "device": [DeviceName()],
    }

    def __init__(
        self,
        n_bits: int,
        *,
        seed: int = 0,
        schedule: str = "cpu",
        iterations: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        hidden: int = 1024,
        continuous_dim: int = 512,
        graph_power: float = 1.4,
        output: str = "linear",
        xi: str = "deterministic",
        device: str = "auto",
    ) -> None:
        super().__init__(n_bits, seed=seed)
        self.schedule = schedule
        self.iterations = iterations
        self.batch_size = batch_size
        self.lr = lr
        self.hidden = hidden
        self.continuous_dim = continuous_dim
        self.graph_power = graph_power
        self.output = output
        self.xi = xi
        self.device = device

    def resolved_schedule(self) -> dict[str, Any]:
        """``iterations`` and ``batch_size`` (ints) and ``lr`` (float): the given values, else those of the
        ``schedule`` preset (before ``batch_size`` is cut to the training rows).

        Raises:
            InputError: the hyper-parameters are invalid (see `validate_params`).
        """
        self.validate_params()
        return self._schedule()

    def _schedule(self) -> dict[str, Any]:
        preset = SCHEDULES[self.schedule]
        given = {"iterations": self.iterations, "batch_size": self.batch_size, "lr": self.lr}
        out = {key: preset[key] if value is None else value for key, value in given.items()}
        return {"iterations": int(out["iterations"]), "batch_size": int(out["batch_size"]), "lr": float(out["lr"])}

    def _fit(self, X: np.ndarray) -> None:
        from hashbench.methods._torch_device import resolve_device
        from hashbench.methods.tbh_model import train_tbh

        device = str(resolve_device(self.device))
        sched = self._schedule()
        sched["batch_size"] = min(sched["batch_size"], X.shape[0])
        fitted = train_tbh(
            X.astype(np.float32, copy=False),
            int(self.n_bits),
            hidden=int(self.hidden),
            continuous_dim=int(self.continuous_dim),
            graph_power=float(self.graph_power),
            output=self.output,
            xi=self.xi,
            lr=sched["lr"],
            batch_size=sched["batch_size"],
            n_iter=sched["iterations"],
            seed=int(self.seed),
            device=device,
        )
        self.hidden_weight_, self.hidden_bias_ = fitted.hidden_weight, fitted.hidden_bias
        self.code_weight_, self.code_bias_ = fitted.code_weight, fitted.code_bias
        self.history_ = fitted.history
        self.fit_info_ = {
            "decoder_parameters": fitted.decoder_parameters,
            "discriminator_parameters": fitted.discriminator_parameters,
        }
        self.resolved_params_ = {**sched, "device": device}

    def _project(self, X: np.ndarray) -> np.ndarray:
        w1 = self.hidden_weight_.astype(np.float64)
        b1 = self.hidden_bias_.astype(np.float64)
        w2 = self.code_weight_.astype(np.float64)
        b2 = self.code_bias_.astype(np.float64)
        out = np.empty((X.shape[0], w2.shape[1]), dtype=np.float64)
        # Row blocks: the hidden layer of 60,000 rows in float64 would take 0.5 GB at once.
        for start in range(0, X.shape[0], _BLOCK_ROWS):
            block = np.asarray(X[start : start + _BLOCK_ROWS], dtype=np.float64)
            out[start : start + _BLOCK_ROWS] = np.maximum(block @ w1 + b1, 0.0) @ w2 + b2
        return out

    def n_parameters(self) -> int:
        """The encoder needed to encode: ``W1`` (d × hidden), ``b1``, ``W2`` (hidden × r), ``b2``. The
        continuous bottleneck, the graph layer, the decoder and the two discriminators are trained too;
        `run_info` reports their sizes."""
        self._check_fitted()
        return int(self.hidden_weight_.size + self.hidden_bias_.size + self.code_weight_.size + self.code_bias_.size)

    def run_info(self) -> dict[str, Any]:
        """``decoder_parameters`` (continuous bottleneck, graph layer and decoder),
        ``discriminator_parameters`` and ``trained_parameters`` (everything trained, encoder included)."""
        if not self.is_fitted():
            return {}
        info = dict(self.fit_info_)
        info["trained_parameters"] = self.n_parameters() + sum(info.values())
        return info
