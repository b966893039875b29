"""Training, evaluation and data sets for the layout models.

`socratext` is imported first, before any module here imports torch: it sets `OMP_THREAD_LIMIT=1`, which
an OpenMP runtime reads only when it is loaded. torch's wheel brings its own `libgomp.so.1`, and libtesseract
(tesserocr) then shares that already-loaded copy, so a torch loaded without the limit gave Tesseract its
whole OpenMP team too (3x the CPU per receipt, tests/test_omp.py).
"""

import socratext  # noqa: F401 - first, for OMP_THREAD_LIMIT (above)
