"""Facts about the software that produced a number: package versions, git commit, device."""
from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# numba and llvmlite compile the evaluation engine that computes every metric.
PACKAGES = ("hashbench", "numpy", "scipy", "scikit-learn", "torch", "torch-geometric", "faiss-cpu", "mlflow", "pandas",
            "numba", "llvmlite")


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


def own_checkout() -> Path | None:
    """The root of hashbench's own source checkout when this code runs from one, else None.

    An installed hashbench, or one installed inside a user's own repository, is not a checkout: the
    folder above ``bench/`` must hold hashbench's ``pyproject.toml`` and be the top of its git work tree.
    """
    root = Path(__file__).resolve().parent.parent
    manifest = root / "pyproject.toml"
    try:
        if not manifest.is_file() or 'name = "hashbench"' not in manifest.read_text():
            return None
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return root if top and Path(top).resolve() == root else None


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of hashbench's own checkout, with ``+dirty`` when it has uncommitted changes; None when
    hashbench does not run from its checkout (never the commit of a user's repository)."""
    root = own_checkout()
    if root is None:
        return None
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, str]:
    """What a run records under ``env.``: ``version.<package>`` for the stack (hashbench's own installed
    version included), ``python``, ``platform``, ``source`` (``checkout`` or ``package``) and, from a
    checkout only, ``git_commit``. None of it is part of a run's identity (`bench.record`)."""
    versions = package_versions()
    commit = git_commit()
    out = {**{f"version.{k}": v for k, v in versions.items() if k != "python"},
           "python": versions["python"], "platform": f"{platform.system()}-{platform.machine()}",
           "source": "checkout" if commit else "package"}
    if commit:
        out["git_commit"] = commit
    return out
