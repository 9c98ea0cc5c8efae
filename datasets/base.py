"""What a dataset loader returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol as TypingProtocol

import numpy as np

TRAIN, TEST = 0, 1  # values of `Dataset.partition`: the source's official train / test parts


class ImageSequence(TypingProtocol):
    """Anything indexable that yields one image as a ``uint8`` array ``(H, W)`` or ``(H, W, 3)``."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> np.ndarray: ...


@dataclass
class Dataset:
    """A labelled collection of images or pre-extracted features.

    * ``labels``: ``(n,)`` integer class ids (single-label) or ``(n, C)`` 0/1 multi-hot.
    * ``images``: an `ImageSequence` (a ``uint8`` array ``(n, H, W[, 3])`` or a lazy reader), or None.
    * ``features``: ``(n, d)`` float32 pre-extracted features, or None (then features are extracted).
    * ``partition``: ``(n,)`` uint8, ``TRAIN``/``TEST`` as the source distributes them, or None.
    * ``splits``: predefined index arrays (``"query"``, ``"database"``, ``"train"``) when the source
      ships its own split files (list-file datasets), else empty.
    * ``side``: side inputs shipped with the data, by name (e.g. ``"tags"``).
    * ``source``: where the data were read from (a path or URL), logged with every run.
    * ``fingerprint``: optional checksum of the data the loader verified (e.g. an archive's md5); part
      of the key under which computed features are cached.
    """

    name: str
    labels: np.ndarray
    images: Any = None
    features: np.ndarray | None = None
    partition: np.ndarray | None = None
    splits: dict[str, np.ndarray] = field(default_factory=dict)
    side: dict[str, np.ndarray] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    source: str = ""
    fingerprint: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def multi_label(self) -> bool:
        return self.labels.ndim == 2

    @property
    def n_classes(self) -> int:
        if self.multi_label:
            return int(self.labels.shape[1])
        return int(self.labels.max()) + 1 if len(self) else 0
