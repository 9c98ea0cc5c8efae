"""DeepBit, Lin, Lu, Chen & Zhou, CVPR 2016 ("Learning compact binary descriptors with unsupervised
deep neural networks"), on pre-extracted features.

DeepBit freezes an ImageNet backbone and trains one new layer ``F(x) = act(x W + b)`` (the release's
``fc8_kevin``) with three losses (exact forms in `methods.deepbit_model`):

* quantisation ``Σ_n ||b_n - F(x_n)||²``, ``b = 1[F > 0.5]``;
* even distribution ``Σ_m (μ_m - 0.5)²``, ``μ_m`` the batch mean of bit ``m``;
* rotation invariance ``Σ_θ C(θ) ||F(x) - F(x_θ)||²`` over rotated copies of the image,
  ``C(θ) = exp(-(θ/5)²/2)``, θ ∈ {-10, -5, +5, +10}° (the release also pairs 0°: zero here),

weighted 1, 1 and 0.001 (the release), in the paper's two stages: quantisation + even distribution,
then all three. Codes: ``1[F(x) > t]`` with ``t`` the mean activation over the training set
(``run_cifar10.m``'s ``mean_th``), i.e. ``z = F(x) - t``.

Here the backbone is the project's feature extractor, so ``X`` are its features and ``views`` the
features of the rotated images (side input ``views``, (n, V, d), needed by ``fit`` only; the harness
counts the backbone). Choices and adaptations, each a parameter:

* ``activation="relu"`` (default since 2026-12-01): the released prototxt's ReLU; ``"sigmoid"`` is
  the paper's output in [0, 1]. First chosen with evaluation labels (scripts/deep_baselines_cifar_study.py:
  1,000 test queries against 5,000 training rows, 96 px features: sigmoid 0.304, ReLU 0.250); measured
  again on the harness's validation split drawn from the training split only (``bench run --validation``,
  CIFAR-10, 64 bits, mAP@76 of 4,500, seeds 0-2): ReLU 0.4489 ± 0.0023, sigmoid 0.4277 ± 0.0091, so the
  default follows the validation split (and the authors' release).
* ``balance_estimator="straight-through"``: the even-distribution term's binary ``μ`` gets a
  straight-through gradient; the quantisation target ``b`` is a constant.
* The losses are the paper's, differentiated by autograd (`run_info` records
  ``loss_impl="paper-autograd"``); the released Caffe layers feed one blob twice with opposite-sign
  constant gradients, so their quantisation and even-distribution gradients cancel.
* Schedules scale with the training-set size ``n`` by keeping the release's passes over the data
  (CIFAR-10, 50,000 images): stage 1, 50,000 iterations × 32 images = ``stage1_epochs=32`` passes,
  lr 1e-3 × 0.1 after 25,000 (``stage1_step_epochs=16``); stage 2, 5,000 iterations × 30 (image,
  rotation) pairs = 6 images with their 5 rotations, 0.6 passes (``stage2_epochs=0.6``), lr 1e-4
  × 0.1 every 1,000 (``stage2_step_epochs=0.12``). On ``n`` rows a stage runs
  ``round(epochs · n / images_per_batch)`` iterations (at least one).
* SGD with momentum 0.9 and weight decay 5e-4 on ``W`` (the bias: twice the rate, no decay, as
  ``lr_mult 2, decay_mult 0``); PyTorch's momentum scales the velocity by the current rate, Caffe's by
  the rate at each step, which differs only right after a rate step.
* Not reproducible on fixed features: the release's random 224 crops, mirroring and the dropout still
  active in the frozen fc6/fc7 during training.
* ``threshold``: ``"train-mean"`` (default, the authors' single scalar: the mean of ``F`` over all
  training rows and bits), ``"train-bit-mean"`` (one mean per bit) or a number (e.g. 0.5).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hashbench.methods._affine import affine
from hashbench.methods.base import Hasher, InputError
from hashbench.methods.constraints import (
    TORCH_SEED_MAX,
    DeviceName,
    FiniteRealSequence,
    Integral,
    Interval,
    Real,
    StrOptions,
)
from hashbench.methods.registry import register_method

RELEASE_IMAGES = 50000
THRESHOLD_RULES = ("train-mean", "train-bit-mean")
# The head's output and the even-distribution term's estimator; `methods.deepbit_model` reads them here.
ACTIVATIONS = ("sigmoid", "relu")
BALANCE_ESTIMATORS = ("straight-through", "activation")


def iterations_for(epochs: float, n_rows: int, images_per_batch: int) -> int:
    """Iterations that visit ``epochs · n_rows`` images in batches of ``images_per_batch`` (at least one)."""
    return max(1, int(round(epochs * n_rows / images_per_batch)))


def head_outputs(X: np.ndarray, weight: np.ndarray, bias: np.ndarray, activation: str) -> np.ndarray:
    """``act(X W + b)`` in float64 (sigmoid as ``½(1 + tanh(a/2))``, which never overflows)."""
    a = affine(X, weight, bias)
    return 0.5 * (1.0 + np.tanh(0.5 * a)) if activation == "sigmoid" else np.maximum(a, 0.0)


@register_method
class DeepBit(Hasher):
    """DeepBit head on fixed features: ``z = act(x W + b) - t`` (see the module docstring).

    Args:
        n_bits: code length ``r``.
        seed: seeds the initial weights and the batch order.
        activation: ``"relu"`` (release, default) or ``"sigmoid"`` (paper).
        threshold: ``"train-mean"`` (default), ``"train-bit-mean"`` or a number.
        balance_estimator: ``"straight-through"`` (default) or ``"activation"`` (``μ`` from ``F``).
        view_angles: the rotation (degrees) of each of the V views, in the order of ``views``.
        angle_scale: ``C(θ) = exp(-(θ / angle_scale)² / 2)`` (5, the release's step).
        quantization_weight, balance_weight, rotation_weight: loss weights (1, 1, 0.001).
        batch_size: stage-1 images per batch (32).
        stage1_lr, stage1_epochs, stage1_step_epochs: 1e-3, 32 passes, × ``lr_gamma`` every 16.
        stage2_batch_pairs: (image, rotation) pairs per stage-2 batch (30), i.e.
            ``max(1, stage2_batch_pairs // (V + 1))`` images with their views.
        stage2_lr, stage2_epochs, stage2_step_epochs: 1e-4, 0.6 passes, × ``lr_gamma`` every 0.12.
        lr_gamma: the step factor (0.1).
        momentum, weight_decay: SGD's (0.9, 5e-4).
        init_std: standard deviation of the initial ``W`` (0.01, the release's filler).
        device: ``"auto"`` (a GPU when present), ``"cpu"`` or ``"cuda[:k]"``.

    Fitted attributes: ``weight_`` (d, r), ``bias_`` (r,), ``threshold_`` (r,), ``n_iter_``
    (stage-1 and stage-2 iterations), ``history_`` (per-pass ``loss``, ``quantization``,
    ``balance``, ``rotation``, ``stage``, ``lr``), ``resolved_params_`` (see `resolved_params`: per
    stage the ``iterations``, ``step_iterations`` and images per batch, and the ``device``).
    """

    name = "deepbit"
    family = "deep"
    side_inputs = ("views",)
    fit_only_side_inputs = ("views",)
    reference = (
        "K. Lin, J. Lu, C.-S. Chen, J. Zhou, Learning Compact Binary Descriptors with Unsupervised Deep "
        "Neural Networks, CVPR 2016 (code: github.com/kevinlin311tw/cvpr16-deepbit)"
    )
    execution_params = ("device",)
    conformance_params = {"stage1_epochs": 2.0, "stage1_step_epochs": 1.0, "stage2_epochs": 1.0}
    # Stage 1's rate and length and the weights of the rotation-invariance and quantisation terms.
    search_space = {"stage1_lr": {"low": 1e-4, "high": 1e-2, "log": True},
                    "stage1_epochs": {"low": 8.0, "high": 64.0},
                    "rotation_weight": {"low": 1e-4, "high": 1e-2, "log": True},
                    "quantization_weight": {"low": 0.1, "high": 10.0, "log": True}}
    _parameter_constraints = {
        "seed": [Interval(Integral, 0, TORCH_SEED_MAX, closed="both")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "threshold": [StrOptions(set(THRESHOLD_RULES)), Interval(Real, None, None, closed="neither")],
        "balance_estimator": [StrOptions(set(BALANCE_ESTIMATORS))],
        "view_angles": [FiniteRealSequence()],
        "angle_scale": [Interval(Real, 0, None, closed="neither")],
        "quantization_weight": [Interval(Real, 0, None, closed="left")],
        "balance_weight": [Interval(Real, 0, None, closed="left")],
        "rotation_weight": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "stage1_lr": [Interval(Real, 0, None, closed="neither")],
        "stage1_epochs": [Interval(Real, 0, None, closed="left")],
        "stage1_step_epochs": [Interval(Real, 0, None, closed="neither")],
        "stage2_batch_pairs": [Interval(Integral, 1, None, closed="left")],
        "stage2_lr": [Interval(Real, 0, None, closed="neither")],
        "stage2_epochs": [Interval(Real, 0, None, closed="left")],
        "stage2_step_epochs": [Interval(Real, 0, None, closed="neither")],
        "lr_gamma": [Interval(Real, 0, None, closed="neither")],
        "momentum": [Interval(Real, 0, None, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "init_std": [Interval(Real, 0, None, closed="neither")],
        "device": [DeviceName()],
    }

    def __init__(
        self,
        n_bits: int,
        *,
        seed: int = 0,
        activation: str = "relu",
        threshold: str | float = "train-mean",
        balance_estimator: str = "straight-through",
        view_angles: tuple[float, ...] = (-10.0, -5.0, 5.0, 10.0),
        angle_scale: float = 5.0,
        quantization_weight: float = 1.0,
        balance_weight: float = 1.0,
        rotation_weight: float = 1e-3,
        batch_size: int = 32,
        stage1_lr: float = 1e-3,
        stage1_epochs: float = 50000 * 32 / RELEASE_IMAGES,
        stage1_step_epochs: float = 25000 * 32 / RELEASE_IMAGES,
        stage2_batch_pairs: int = 30,
        stage2_lr: float = 1e-4,
        stage2_epochs: float = 5000 * 6 / RELEASE_IMAGES,
        stage2_step_epochs: float = 1000 * 6 / RELEASE_IMAGES,
        lr_gamma: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        init_std: float = 0.01,
        device: str = "auto",
    ) -> None:
        super().__init__(n_bits, seed=seed)
        self.activation = activation
        self.threshold = threshold
        self.balance_estimator = balance_estimator
        self.view_angles = view_angles
        self.angle_scale = angle_scale
        self.quantization_weight = quantization_weight
        self.balance_weight = balance_weight
        self.rotation_weight = rotation_weight
        self.batch_size = batch_size
        self.stage1_lr = stage1_lr
        self.stage1_epochs = stage1_epochs
        self.stage1_step_epochs = stage1_step_epochs
        self.stage2_batch_pairs = stage2_batch_pairs
        self.stage2_lr = stage2_lr
        self.stage2_epochs = stage2_epochs
        self.stage2_step_epochs = stage2_step_epochs
        self.lr_gamma = lr_gamma
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.init_std = init_std
        self.device = device

    # ----------------------------------------------------------------- validation
    def _check_views(self, views: np.ndarray, n: int, d: int) -> np.ndarray:
        n_views = len(self.view_angles)
        if views.ndim != 3 or views.shape[1:] != (n_views, d):
            raise InputError(
                f"views must have shape (n, {n_views}, {d}) (one feature row per angle of view_angles="
                f"{tuple(self.view_angles)}), got {views.shape}"
            )
        if not np.issubdtype(views.dtype, np.number) or np.issubdtype(views.dtype, np.complexfloating):
            raise InputError(f"views must be real-valued, got dtype {views.dtype}")
        views = views.astype(np.float32, copy=False)
        bad = int(views.size - np.count_nonzero(np.isfinite(views)))
        if bad:
            raise InputError(f"views has {bad} NaN or infinite values")
        return views

    # ----------------------------------------------------------------- fit / project
    def _fit(self, X: np.ndarray, **side: np.ndarray) -> None:
        n, d = X.shape
        views = self._check_views(side["views"], n, d)
        from hashbench.methods._torch_device import resolve_device
        from hashbench.methods.deepbit_model import train_deepbit

        device = str(resolve_device(self.device))
        batch1 = int(self.batch_size)
        batch2 = max(1, int(self.stage2_batch_pairs) // (len(self.view_angles) + 1))
        stage1_iter = iterations_for(self.stage1_epochs, n, batch1) if self.stage1_epochs > 0 else 0
        stage2_iter = iterations_for(self.stage2_epochs, n, batch2) if self.stage2_epochs > 0 else 0
        stage1_step = iterations_for(self.stage1_step_epochs, n, batch1)
        stage2_step = iterations_for(self.stage2_step_epochs, n, batch2)
        fitted = train_deepbit(
            X,
            views,
            int(self.n_bits),
            view_angles=tuple(float(a) for a in self.view_angles),
            angle_scale=float(self.angle_scale),
            activation=self.activation,
            balance_estimator=self.balance_estimator,
            weights=(float(self.quantization_weight), float(self.balance_weight), float(self.rotation_weight)),
            init_std=float(self.init_std),
            momentum=float(self.momentum),
            weight_decay=float(self.weight_decay),
            lr_gamma=float(self.lr_gamma),
            stage1=(float(self.stage1_lr), batch1, stage1_iter, stage1_step),
            stage2=(float(self.stage2_lr), batch2, stage2_iter, stage2_step),
            seed=int(self.seed),
            device=device,
        )
        weight, bias = fitted.weight.astype(np.float64), fitted.bias.astype(np.float64)
        F = head_outputs(X, weight, bias, self.activation)
        if self.threshold == "train-mean":
            threshold = np.full(int(self.n_bits), F.mean())
        elif self.threshold == "train-bit-mean":
            threshold = F.mean(axis=0)
        else:
            threshold = np.full(int(self.n_bits), float(self.threshold))
        self.weight_, self.bias_, self.threshold_ = weight, bias, threshold
        self.n_iter_ = fitted.iterations
        self.history_ = fitted.history
        self.resolved_params_ = {
            "stage1_iterations": stage1_iter,
            "stage1_step_iterations": stage1_step,
            "stage2_iterations": stage2_iter,
            "stage2_step_iterations": stage2_step,
            "stage2_images_per_batch": batch2,
            "device": device,
        }

    def _project(self, X: np.ndarray, **side: np.ndarray) -> np.ndarray:
        # Views are accepted (the harness may pass every side input) but a code needs only X.
        return head_outputs(X, self.weight_, self.bias_, self.activation) - self.threshold_

    def n_parameters(self) -> int:
        """The trained head ``W`` (d × r) and ``b`` (r), plus the threshold: one number for the
        scalar rules, r for ``"train-bit-mean"``. The frozen backbone is the extractor's, not counted."""
        self._check_fitted()
        n_threshold = self.threshold_.size if self.threshold == "train-bit-mean" else 1
        return int(self.weight_.size + self.bias_.size + n_threshold)

    def run_info(self) -> dict[str, Any]:
        self._check_fitted()
        return {"loss_impl": "paper-autograd", "threshold_value": float(self.threshold_.mean())}
