"""Ferry benchmark suite (see bench/run.py and docs/performance.md)."""
