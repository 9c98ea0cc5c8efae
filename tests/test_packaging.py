"""hashbench installs beside anything: one import namespace (`bench` and `hashbench` only)."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(REPO)], check=True, capture_output=True, text=True, timeout=600)
    (built,) = out.glob("hashbench-*.whl")
    return built


def test_the_wheel_installs_no_top_level_name_but_bench_and_hashbench(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"bench", "hashbench"}
    assert "hashbench/methods/itq.py" in names and "hashbench/datasets/features/effnet.py" in names
    assert "hashbench/methods/lagnh.py" in names and "bench/cli.py" in names
    assert not [n for n in names if "/tests/" in n or n.startswith(("tests/", "scripts/"))]


def test_a_foreign_datasets_package_first_on_the_path_changes_nothing(tmp_path):
    """Hugging Face's `datasets` (here a stand-in that would break any import of ours) beside hashbench."""
    foreign = tmp_path / "datasets"
    foreign.mkdir()
    (foreign / "__init__.py").write_text("raise ImportError('this is not hashbench')\n")
    (tmp_path / "methods.py").write_text("raise ImportError('this is not hashbench either')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    ours = subprocess.run([sys.executable, "-m", "bench", "list", "datasets"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout
    beside = subprocess.run([sys.executable, "-m", "bench", "list", "datasets"], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert beside.returncode == 0, beside.stderr
    assert beside.stdout == ours and "digits" in ours


def test_code_imports_only_the_namespace():
    """No module of the project imports the bare folder names (they exist only in a checkout)."""
    import re

    bare = re.compile(r"^\s*(from|import) (methods|datasets)\b", re.M)
    offenders = [str(p.relative_to(REPO)) for folder in ("bench", "methods", "datasets", "hashbench", "tests", "scripts")
                 for p in (REPO / folder).rglob("*.py") if bare.search(p.read_text())]
    assert offenders == []


def test_the_wheel_ships_the_accuracy_references_as_package_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "hashbench/reference/digits-shallow.json" in names


def _environment_module_at(folder: Path):
    """bench/environment.py loaded from a copy under ``folder``/bench, as if hashbench lived there."""
    import importlib.util

    (folder / "bench").mkdir(parents=True)
    (folder / "bench" / "environment.py").write_text((REPO / "bench" / "environment.py").read_text())
    spec = importlib.util.spec_from_file_location(f"env_copy_{abs(hash(folder))}", folder / "bench" / "environment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _git_repo(folder: Path, pyproject_name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(f'[project]\nname = "{pyproject_name}"\n')
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x"]):
        subprocess.run(cmd, cwd=folder, check=True, capture_output=True)


def test_the_commit_is_recorded_only_from_hashbenchs_own_checkout(tmp_path):
    user = tmp_path / "user-project"
    _git_repo(user, "my-own-project")
    inside_users_repo = _environment_module_at(user / "vendor")
    assert inside_users_repo.git_commit() is None
    env = inside_users_repo.environment()
    assert env["source"] == "package" and "git_commit" not in env
    vendored = user / "third_party" / "hashbench"  # hashbench's source copied into a user's repository
    vendored.mkdir(parents=True)
    (vendored / "pyproject.toml").write_text('[project]\nname = "hashbench"\n')
    assert _environment_module_at(vendored).git_commit() is None  # the user's commit is never recorded
    ours = tmp_path / "hashbench-checkout"
    _git_repo(ours, "hashbench")
    checkout = _environment_module_at(ours)
    assert checkout.own_checkout() == ours.resolve()
    assert checkout.environment()["source"] == "checkout" and len(checkout.git_commit().split("+")[0]) == 40
