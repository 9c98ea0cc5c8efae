#!/usr/bin/env bash
# Regenerates everything committed under results/ (tables, HTML pages, figures) from one MLflow store.
#
#   results/regenerate.sh [TRACKING_URI]        (default: sqlite:///results-sweeps.db in the checkout)
#
# The sweeps first (`bench run --config`, one thread per run): runs already in the store are reused,
# missing ones computed; then `bench report` and `bench plot` write results/<dataset>-<protocol>/.
# Needs the datasets (Fashion-MNIST; CIFAR-10 via $HASHBENCH_CIFAR10 or --data-root) and, for a fresh
# store, about 10 hours on two cores (results/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
URI="${1:-sqlite:///$PWD/results-sweeps.db}"
PY="${PYTHON:-.venv/bin/python}"
for d in cifar10 fashion-mnist; do
    for f in results/sweeps/$d.yaml results/sweeps/$d-ablations.yaml; do
        "$PY" -m bench run --config "$f" --threads 1 --tracking-uri "$URI" -q > /dev/null
    done
    exp="$d/$d"
    out="results/$d-$d"
    "$PY" -m bench report --tracking-uri "$URI" --experiment "$exp" --output-dir results
    "$PY" -m bench plot --tracking-uri "$URI" --experiment "$exp" --output-dir results
    "$PY" -m bench report --tracking-uri "$URI" --experiment "$exp" --metric distinct_codes --format markdown \
        --output "$out/distinct_codes.md"
done
