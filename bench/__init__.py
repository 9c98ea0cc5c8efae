"""hashbench harness: CLI, runner, the evaluation engine, tracking, reports and plots.

Importing `bench` is cheap: no torch, no torch-geometric, no MLflow until a command needs them.
"""
