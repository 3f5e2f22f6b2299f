"""asyncauth's benchmarks: run ``nox -s bench`` or ``python -m benchmarks``."""
