"""Benchmark scripts: run with `python -m experiments.benchmarks.<name>`; they print figures."""
