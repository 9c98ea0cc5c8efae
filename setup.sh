#!/usr/bin/env bash
# Prepare a fresh Debian machine for hashbench in one go:
#   1. the system data package `dataset-fashion-mnist` (the default dataset), where apt exists;
#   2. a virtual environment `.venv` with Python 3.11;
#   3. hashbench itself, editable, with the test, feature-extraction and Ray extras, at the exact versions
#      of constraints.txt (pyproject.toml states the ranges hashbench works with).
# Safe to re-run: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf 'setup: %s\n' "$*"; }

if command -v dpkg >/dev/null 2>&1 && dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
    say "dataset-fashion-mnist already installed"
elif command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else SUDO="unavailable"; fi
    fi
    if [ "$SUDO" = "unavailable" ]; then
        say "not root and no sudo: skipping dataset-fashion-mnist (hashbench will look in --data-root or download it)"
    else
        say "installing the Debian package dataset-fashion-mnist"
        $SUDO apt-get update -qq >/dev/null || say "apt-get update failed; trying the install anyway"
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null \
            || say "could not install dataset-fashion-mnist (hashbench will look in --data-root or download it)"
    fi
else
    say "no apt-get on this machine: skipping dataset-fashion-mnist (hashbench will look in --data-root or download it)"
fi

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && \
           "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
            PYTHON="$candidate"; break
        fi
    done
fi
if [ -z "$PYTHON" ]; then
    echo "setup: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2
    exit 2
fi

if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
fi
say "installing hashbench and its pinned dependencies into .venv (first time: a few minutes)"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e '.[test,features,ray]'
say "done: use .venv/bin/python -m bench --help"
