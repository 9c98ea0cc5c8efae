"""Torch helpers shared by the deep unsupervised baselines (SGH, DeepBit). Imports torch: import it
only inside ``fit``.

* `resolve_device` : ``"auto"`` -> ``cuda`` when available, else ``cpu``; any other string is passed
  to ``torch.device`` (``"cpu"``, ``"cuda:1"``).
* `cpu_generator` : a seeded CPU ``torch.Generator``. Initial weights and noise are drawn on the CPU
  and then moved, so that a seed gives the same numbers whatever the device.
"""
from __future__ import annotations

import torch

from hashbench.methods.base import InputError


def resolve_device(device: str) -> torch.device:
    """The torch device for a ``device`` hyper-parameter (``"auto"``, ``"cpu"``, ``"cuda"``...)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"device must be 'auto', 'cpu' or 'cuda[:k]', got {device!r}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device={device!r} was asked for but no CUDA GPU is available; use device='auto'")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise InputError(f"device={device!r} was asked for but this machine has {torch.cuda.device_count()} "
                         "CUDA GPU(s)")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device={device!r} was asked for but MPS is not available here; use device='auto'")
    return resolved


def check_device(device: str) -> None:
    """Refuse, with one `InputError` line, a device this machine does not have (for a check before any
    work; ``"auto"`` and ``"cpu"`` always exist)."""
    if device not in ("auto", "cpu"):
        resolve_device(device)


def cpu_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(seed))
    return generator
