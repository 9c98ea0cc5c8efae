"""GreedyHash, unsupervised variant (Su, Zhang, Han & Tian, NeurIPS 2018, "Greedy Hash: Towards Fast
Optimization for Accurate Hash Coding in CNN"), on pre-extracted features.

One new layer ``h = x W + b`` on the frozen backbone's features, binarised by ``sign`` in the forward
pass with the gradient passed straight through (identity) in the backward pass. Loss on half-batch
pairs ``(i, k + i)`` (`methods._cosine_hash_model`):

    L = mean_i (cos(sign h_i, sign h_{k+i}) - cos(x_i, x_{k+i}))²  +  α · mean(| |h| - 1 |³),   α = 0.1,

as the unsupervised code of DeepHash-pytorch (``Unsupervised_GreedyHash.py``, after the authors'
``ssppp/GreedyHash``). Codes: ``sign(h)``, i.e. ``z = x W + b``.

Schedules (`methods._cosine_hash`): ``"authors"`` is DeepHash-pytorch's (SGD lr 1e-4, momentum 0.9,
weight decay 5e-4, batch 64, 200 passes, rate × 0.1 every 30); ``"cpu"`` (default) is the one chosen
on a validation split of the training split, see `SCHEDULES`.
"""
from __future__ import annotations

from typing import Any

from hashbench.methods._cosine_hash import CosineHasher
from hashbench.methods.constraints import Interval, Real
from hashbench.methods.registry import register_method

# "cpu": validation mAP@1000 on a split of the cifar10 protocol's training rows only
# (scripts/cosine_hash_validation_study.py; README "GreedyHash and BiHalf as implemented"). 64 bits, batch
# 256 x 50 passes, lr 1e-3 / 1e-2 / 3e-2 / 1e-1 / 0.3 -> 0.230 / 0.323 / 0.344 / 0.354 / 0.346 (1.0
# diverges); but at 16 bits lr 0.1 diverges (NaN: the cubic term's gradient, 1/r per element, grows with
# |h|), 3e-2 gives 0.282, 1e-2 0.274: 3e-2 is the largest stable rate measured. ITQ: 0.369 (64), 0.356 (16).
SCHEDULES: dict[str, dict[str, Any]] = {
    "authors": {"batch_size": 64, "epochs": 200, "lr": 1e-4, "lr_step_epochs": 30},
    "cpu": {"batch_size": 256, "epochs": 50, "lr": 0.03, "lr_step_epochs": 20},
}


@register_method
class GreedyHash(CosineHasher):
    """GreedyHash-unsupervised head: ``z = x W + b`` (see the module docstring).

    Args:
        n_bits: code length ``r``.
        seed: seeds the initial weights and the batch order.
        alpha: weight of the cubic term ``mean(| |h| - 1 |³)`` (the authors' 0.1).
        schedule, batch_size, epochs, lr, lr_step_epochs, lr_gamma, momentum, weight_decay,
            center_features, device:
            see `methods._cosine_hash.CosineHasher`.
    """

    name = "greedyhash"
    reference = (
        "S. Su, C. Zhang, K. Han, Y. Tian, Greedy Hash: Towards Fast Optimization for Accurate Hash Coding "
        "in CNN, NeurIPS 2018 (code: github.com/ssppp/GreedyHash; unsupervised: github.com/swuxyj/DeepHash-pytorch)"
    )
    layer = "sign"
    SCHEDULES = SCHEDULES
    # The schedule (rate, passes) and the weight of the |h| -> 1 term, around the "cpu" preset.
    search_space = {"lr": {"low": 3e-3, "high": 3e-1, "log": True}, "epochs": {"low": 10, "high": 100},
                    "alpha": {"low": 0.01, "high": 1.0, "log": True}}
    _parameter_constraints = {"alpha": [Interval(Real, 0, None, closed="left")]}

    def __init__(
        self,
        n_bits: int,
        *,
        seed: int = 0,
        alpha: float = 0.1,
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
        self.alpha = alpha

    def _layer_options(self) -> tuple[float, float]:
        return 0.0, float(self.alpha)
