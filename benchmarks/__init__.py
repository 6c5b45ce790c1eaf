"""Chronolog's benchmarks: `python benchmarks/run_core.py [--quick]`, or `pytest benchmarks/`."""
