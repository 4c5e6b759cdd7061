"""Side-by-side benchmarks: `python -m bench --full | --quick | --smoke` (see README.md)."""
