"""Where downloaded archives, extracted data and computed features live."""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "HASHBENCH_DATA"


def cache_dir() -> Path:
    """``$HASHBENCH_DATA`` if set, else ``~/.cache/hashbench``; created on first use."""
    root = os.environ.get(ENV_VAR)
    path = Path(root).expanduser() if root else Path.home() / ".cache" / "hashbench"
    path.mkdir(parents=True, exist_ok=True)
    return path
