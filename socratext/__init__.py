"""Socratext: structured fields from receipt images (OCR words with boxes → labelled words → fields).

`socratext.extract(images)` is the library entry point; the CLI, the evaluation and the streaming workers
all go through `socratext.pipeline`.
"""

from socratext.document import FieldValue, Item, OcrPage, Receipt, VatLine, Word, WordLabel
from socratext.pipeline import extract, extract_files, load_extractor

__version__ = "0.1.0"
__all__ = ["FieldValue", "Item", "OcrPage", "Receipt", "VatLine", "Word", "WordLabel", "extract",
           "extract_files", "load_extractor", "__version__"]
