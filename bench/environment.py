"""Facts about the software that produced a number: package versions, git commit, device."""
from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("hashbench", "numpy", "scipy", "scikit-learn", "torch", "torch-geometric", "faiss-cpu", "mlflow", "pandas")


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    out["python"] = platform.python_version()
    return out


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the project checkout, with ``+dirty`` when it has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict[str, str]:
    """What a run records under ``env.``: ``version.<package>`` for the stack, ``python``, ``platform``
    and ``git_commit``. None of it is part of a run's identity (`bench.record`)."""
    versions = package_versions()
    return {**{f"version.{k}": v for k, v in versions.items() if k != "python"},
            "python": versions["python"], "platform": f"{platform.system()}-{platform.machine()}",
            "git_commit": git_commit()}
