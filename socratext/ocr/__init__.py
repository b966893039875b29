"""OCR: image preprocessing and the Tesseract engines (`make_ocr` picks one) that turn page images into
`OcrPage`s."""

from socratext.ocr.backends import BACKENDS, make_ocr
from socratext.ocr.preprocess import (
    PREPROCESS_VERSION,
    PreprocessInfo,
    estimate_skew,
    preprocess,
    preprocess_with_info,
)
from socratext.ocr.tesseract import TesseractOcr, words_from_data

__all__ = ["BACKENDS", "PREPROCESS_VERSION", "PreprocessInfo", "TesseractOcr", "estimate_skew", "make_ocr",
           "preprocess", "preprocess_with_info", "words_from_data"]
