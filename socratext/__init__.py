"""Socratext: structured fields from receipt images (OCR words with boxes → labelled words → fields).

`socratext.extract(images)` is the library entry point; the CLI, the evaluation and the streaming workers
all go through `socratext.pipeline`.

`OMP_THREAD_LIMIT=1` is set here, before anything else is imported, because an OpenMP runtime reads its
environment once, when it is loaded — libgomp by libtesseract (tesserocr) and torch's own copy — and
every entry point (the CLI, the workers, `python -m training.*`, `import socratext`) imports this package
before either. Tesseract's OpenMP threads made OCR of small receipts several times slower and spent more
CPU spinning than reading (a plain shell: 407 s for 60 SROIE scans, 69 s with the variable exported;
docs/benchmarks.md); parallelism belongs across receipts instead. Setting the variable in the OCR engine's
constructor was too late: `tesserocr` had already been imported. An operator's explicit value wins.

`OMP_NUM_THREADS=1` goes with it (unless set): torch asks OpenMP for teams of its intra-op thread count,
and a team larger than the limit hung LayoutLMv2's backward pass (tests/test_layoutlmv2.py) in libgomp.
"""

import os

if "OMP_THREAD_LIMIT" not in os.environ:
    os.environ["OMP_THREAD_LIMIT"] = "1"
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from socratext.document import FieldValue, Item, OcrPage, Receipt, VatLine, Word, WordLabel  # noqa: E402
from socratext.pipeline import extract, extract_files, load_extractor  # noqa: E402

__version__ = "0.1.0"
__all__ = ["FieldValue", "Item", "OcrPage", "Receipt", "VatLine", "Word", "WordLabel", "extract",
           "extract_files", "load_extractor", "__version__"]
