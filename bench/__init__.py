"""Benchmarks (speed targets live here, not in timed unit tests). `python -m bench [NAME ...]`."""
