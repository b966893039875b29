"""OCR: image preprocessing and the Tesseract engine that turns page images into `OcrPage`s."""

from socratext.ocr.preprocess import (
    PREPROCESS_VERSION,
    PreprocessInfo,
    estimate_skew,
    preprocess,
    preprocess_with_info,
)
from socratext.ocr.tesseract import TesseractOcr, words_from_data

__all__ = ["PREPROCESS_VERSION", "PreprocessInfo", "TesseractOcr", "estimate_skew", "preprocess",
           "preprocess_with_info", "words_from_data"]
