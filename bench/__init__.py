"""Benchmarks of `working serve` against its baselines; run with `uv run python -m bench`."""
