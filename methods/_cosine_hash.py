"""The part GreedyHash-unsupervised (`methods.greedyhash`) and BiHalf (`methods.bihalf`) share: one linear
layer on the frozen features, trained so that the cosine similarity of two rows' binary codes matches
that of their features, with the authors' SGD and step schedule (the torch side, losses and loop, is
`methods._cosine_hash_model`). Numpy only: torch is imported inside ``fit``.

Both methods' authors train on CIFAR-10's 50,000 training images (``cifar10-2``; DeepHash-pytorch's
``Unsupervised_GreedyHash.py`` and ``Unsupervised_BiHalf.py``, BiHalf's own ``ImageHashing/Cifar10_I.py``)
for 200 or 300 passes on a GPU. The benchmark's training split is 5,000 rows and its budget two CPU
cores, so each method keeps the authors' schedule as the preset ``schedule="authors"`` (their batch,
passes, rate and step, in passes over the data as the other deep baselines scale them) and defaults to
``schedule="cpu"``, chosen on a validation split of the training split (the method modules give the
numbers). A preset fills ``batch_size``, ``epochs``, ``lr`` and ``lr_step_epochs`` left as None; a
value given explicitly wins.

Codes: ``z = x W + b``, bit ``z >= 0`` (the authors' test-time ``sign(h)`` for both methods).
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from hashbench.methods._affine import affine
from hashbench.methods.base import Hasher, InputError
from hashbench.methods.constraints import (
    TORCH_SEED_MAX,
    DeviceName,
    Integral,
    Interval,
    Real,
    StrOptions,
)

SCHEDULE_KEYS = ("batch_size", "epochs", "lr", "lr_step_epochs")


class CosineHasher(Hasher):
    """Base of GreedyHash and BiHalf (not registered): ``z = x W + b`` trained by
    `methods._cosine_hash_model.train_cosine_hash`.

    A subclass sets ``name``, ``reference``, ``layer`` (``"sign"`` or ``"bihalf"``), ``SCHEDULES``
    (``{"cpu": {...}, "authors": {...}}`` over `SCHEDULE_KEYS`), its own hyper-parameters and
    ``_layer_options()`` -> ``(gamma, alpha)``.

    Shared hyper-parameters: ``seed`` (initial weights and batch order), ``schedule``, ``batch_size``
    (rows per step; the first half of a batch is paired with the second), ``epochs`` (passes),
    ``lr``, ``lr_step_epochs`` and ``lr_gamma`` (rate ``lr · lr_gamma^⌊epoch / lr_step_epochs⌋``),
    ``momentum`` and ``weight_decay`` (SGD's; the authors' 0.9 and 5e-4), ``center_features``
    (subtract the training mean from the features before training, so that the target cosines of
    non-negative CNN features span [-1, 1] like those of balanced codes; the authors: no; folded into
    ``bias_``), ``device``.

    Fitted attributes: ``weight_`` (d, r), ``bias_`` (r,) (in input units), ``input_mean_`` (d,) or
    None, ``n_iter_`` (epochs run), ``history_``
    (per-epoch ``loss``, ``similarity``, ``quantization``, ``lr``), ``resolved_params_`` (the
    schedule as used and the device).
    """

    family = "deep"
    execution_params = ("device",)
    layer: ClassVar[str] = ""
    SCHEDULES: ClassVar[dict[str, dict[str, Any]]] = {}
    conformance_params = {"epochs": 5, "batch_size": 32, "lr": 1e-2}
    _parameter_constraints = {
        "seed": [Interval(Integral, 0, TORCH_SEED_MAX, closed="both")],
        "schedule": [StrOptions({"cpu", "authors"})],
        "batch_size": [Interval(Integral, 2, None, closed="left"), None],
        "epochs": [Interval(Integral, 1, None, closed="left"), None],
        "lr": [Interval(Real, 0, None, closed="neither"), None],
        "lr_step_epochs": [Interval(Integral, 1, None, closed="left"), None],
        "lr_gamma": [Interval(Real, 0, None, closed="neither")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "center_features": ["boolean"],
        "device": [DeviceName()],
    }

    def __init__(
        self,
        n_bits: int,
        *,
        seed: int,
        schedule: str,
        batch_size: int | None,
        epochs: int | None,
        lr: float | None,
        lr_step_epochs: int | None,
        lr_gamma: float,
        momentum: float,
        weight_decay: float,
        center_features: bool,
        device: str,
    ) -> None:
        super().__init__(n_bits, seed=seed)
        self.schedule = schedule
        self.batch_size = batch_size
        self.epochs = epochs
        self.lr = lr
        self.lr_step_epochs = lr_step_epochs
        self.lr_gamma = lr_gamma
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.center_features = center_features
        self.device = device

    # ----------------------------------------------------------------- settings
    def resolved_schedule(self) -> dict[str, Any]:
        """``batch_size``, ``epochs``, ``lr_step_epochs`` (ints) and ``lr`` (float): the given values,
        else those of the ``schedule`` preset.

        Raises:
            InputError: the hyper-parameters are invalid (see `validate_params`).
        """
        self.validate_params()
        return self._schedule()

    def _schedule(self) -> dict[str, Any]:
        preset = self.SCHEDULES[self.schedule]
        out = {key: preset[key] if getattr(self, key) is None else getattr(self, key) for key in SCHEDULE_KEYS}
        return {key: float(value) if key == "lr" else int(value) for key, value in out.items()}

    def _check_params(self) -> None:
        self._check_preset(self.SCHEDULES[self.schedule], f"the {self.schedule!r} schedule")

    def _layer_options(self) -> tuple[float, float]:
        """``(gamma, alpha)``: the bi-half backward's γ and the cubic term's weight α."""
        raise NotImplementedError

    # ----------------------------------------------------------------- fit / project
    def _fit(self, X: np.ndarray, **side: np.ndarray) -> None:
        from hashbench.methods._cosine_hash_model import train_cosine_hash
        from hashbench.methods._torch_device import resolve_device

        device = str(resolve_device(self.device))
        sched = self._schedule()
        gamma, alpha = self._layer_options()
        mean = X.mean(axis=0, dtype=np.float64) if self.center_features else None
        # In the input's precision: one temporary of X's size, not a float64 one.
        train_X = X if mean is None else (X - mean.astype(X.dtype)).astype(np.float32, copy=False)
        fitted = train_cosine_hash(
            train_X,
            int(self.n_bits),
            name=self.name,
            layer=self.layer,
            gamma=float(gamma),
            alpha=float(alpha),
            lr=sched["lr"],
            momentum=float(self.momentum),
            weight_decay=float(self.weight_decay),
            batch_size=sched["batch_size"],
            epochs=sched["epochs"],
            lr_step_epochs=sched["lr_step_epochs"],
            lr_gamma=float(self.lr_gamma),
            seed=int(self.seed),
            device=device,
        )
        weight, bias = fitted.weight.astype(np.float64), fitted.bias.astype(np.float64)
        # (x - μ) W + b = x W + (b - μ W): the centring costs nothing at encoding time.
        self.weight_ = weight
        self.bias_ = bias if mean is None else bias - mean @ weight
        self.input_mean_ = mean
        self.n_iter_ = sched["epochs"]
        self.history_ = fitted.history
        self.resolved_params_ = {**sched, "device": device}

    def _project(self, X: np.ndarray, **side: np.ndarray) -> np.ndarray:
        return affine(X, self.weight_, self.bias_)

    def n_parameters(self) -> int:
        """The trained layer ``W`` (d × r) and ``b`` (r); the frozen backbone is the extractor's."""
        self._check_fitted()
        return int(self.weight_.size + self.bias_.size)
