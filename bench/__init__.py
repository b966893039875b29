"""Benchmarks. `socratext` is imported first so that `python -m bench.*` runs with the OpenMP thread limit
users get (`socratext/__init__.py`), whatever a benchmark imports next — nothing here exports it."""

import socratext  # noqa: F401 - first, for OMP_THREAD_LIMIT
