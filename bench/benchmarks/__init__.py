"""Stand-alone speed and memory measurements of the harness's engines (``python -m bench.benchmarks.NAME``)."""
