"""Load benchmarks for keystead (not tests). Run with `python -m bench`; see docs/performance.md."""
