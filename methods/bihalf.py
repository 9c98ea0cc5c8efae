"""BiHalf (Li & van Gemert, AAAI 2021, "Deep Unsupervised Image Hashing by Maximizing Bit Entropy"), on
pre-extracted features.

One new layer ``h = x W + b`` on the frozen backbone's features and the parameter-free bi-half layer:
per bit, the upper half of the batch (by ``h``) is coded +1 and the rest -1, which makes every bit
exactly balanced on each training batch; backward, the authors' ``∂h = ∂B + γ (h - B) / numel`` with
γ = 6 (``ImageHashing/Cifar10_I.py``'s ``hash.backward``). Loss on half-batch pairs ``(i, k + i)``:

    L = mean_i (cos(B_i, B_{k+i}) - cos(x_i, x_{k+i}))²

(`methods._cosine_hash_model`). Test-time codes: ``sign(h)``, i.e. ``z = x W + b`` (the authors'
``compress``), so a code never depends on the other rows encoded with it.

Schedules (`methods._cosine_hash`): ``"authors"`` is the authors' ``Cifar10_I.py`` (SGD lr 1e-4,
momentum 0.9, weight decay 5e-4, batch 32, 300 passes, rate × 0.1 at 120); ``"cpu"`` (default) is
the one chosen on a validation split of the training split, see `SCHEDULES`.
"""
from __future__ import annotations

from typing import Any

from hashbench.methods._cosine_hash import CosineHasher
from hashbench.methods.constraints import Interval, Real
from hashbench.methods.registry import register_method

# "cpu": validation mAP@1000 on a split of the cifar10 protocol's training rows only
# (scripts/cosine_hash_validation_study.py; README "GreedyHash and BiHalf as implemented"). Batch 64 x 20
# passes, lr 1e-3 / 3e-3 / 1e-2: 16 bits 0.340 / 0.342 / 0.158, 32 bits - / 0.367 / 0.346, 64 bits
# 0.368 / 0.378 / 0.390 (3e-2: 0.329). 1e-2 fails at short codes; 3e-3 is the best over the three
# lengths. Batch 256 x 50 at 64 bits, lr 1e-3 / 3e-3 / 1e-2 / 3e-2 / 1e-1: 0.359 / 0.374 / 0.384 / 0.379
# / 0.223; the authors' rate 1e-4 (100 passes of 256): 0.325. ITQ: 0.356 (16 bits), 0.369 (64 bits).
SCHEDULES: dict[str, dict[str, Any]] = {
    "authors": {"batch_size": 32, "epochs": 300, "lr": 1e-4, "lr_step_epochs": 120},
    "cpu": {"batch_size": 64, "epochs": 20, "lr": 3e-3, "lr_step_epochs": 8},
}


@register_method
class BiHalfHash(CosineHasher):
    """BiHalf head: ``z = x W + b`` trained through the bi-half layer (see the module docstring).

    Args:
        n_bits: code length ``r``.
        seed: seeds the initial weights and the batch order.
        gamma: γ of the bi-half layer's backward (the authors' 6).
        schedule, batch_size, epochs, lr, lr_step_epochs, lr_gamma, momentum, weight_decay,
            center_features, device:
            see `methods._cosine_hash.CosineHasher`.
    """

    name = "bihalf"
    reference = (
        "Y. Li, J. van Gemert, Deep Unsupervised Image Hashing by Maximizing Bit Entropy, AAAI 2021 "
        "(code: github.com/liyunqianggyn/Deep-Unsupervised-Image-Hashing)"
    )
    layer = "bihalf"
    SCHEDULES = SCHEDULES
    # The schedule (rate, passes) around the "cpu" preset and the backward's gamma (authors: 6).
    search_space = {"lr": {"low": 3e-4, "high": 3e-2, "log": True}, "epochs": {"low": 5, "high": 60},
                    "gamma": {"low": 1.0, "high": 12.0}}
    _parameter_constraints = {"gamma": [Interval(Real, 0, None, closed="left")]}

    def __init__(
        self,
        n_bits: int,
        *,
        seed: int = 0,
        gamma: float = 6.0,
        schedule: str = "cpu",
        batch_size: int | None = None,
        epochs: int | None = None,
        lr: float | None = None,
        lr_step_epochs: int | None = None,
        lr_gamma: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        center_features: bool = False,
        device: str = "auto",
    ) -> None:
        super().__init__(
            n_bits, seed=seed, schedule=schedule, batch_size=batch_size, epochs=epochs, lr=lr,
            lr_step_epochs=lr_step_epochs, lr_gamma=lr_gamma, momentum=momentum, weight_decay=weight_decay,
            center_features=center_features, device=device,
        )
        self.gamma = gamma

    def _layer_options(self) -> tuple[float, float]:
        return float(self.gamma), 0.0
