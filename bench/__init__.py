"""Benchmarks of qbo-sync: `python -m bench` runs them and writes bench/results/<name>.json."""
