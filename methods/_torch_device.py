"""Torch helpers shared by the deep unsupervised baselines (SGH, DeepBit). Imports torch: import it
only inside ``fit``.

* `resolve_device` : ``"auto"`` -> ``cuda`` when available, else ``cpu``; any other string is passed
  to ``torch.device`` (``"cpu"``, ``"cuda:1"``).
* `cpu_generator` : a seeded CPU ``torch.Generator``. Initial weights and noise are drawn on the CPU
  and then moved, so that a seed gives the same numbers whatever the device.
"""
from __future__ import annotations

import torch

from methods.base import InputError


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
    return resolved


def cpu_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(seed))
    return generator
