"""Tesseract 5 (LSTM) through pytesseract: page images in, `OcrPage`s of words with boxes out.

Tesseract is the CPU-friendly, self-hostable OCR with French and English models, and its TSV output
gives exactly what the layout models need: every word with its box, confidence and (block, paragraph,
line) position. Boxes are in pixels of the preprocessed image (see `socratext.ocr.preprocess`), and the
page's width/height are that image's, so `OcrPage.norm_boxes()` is right by construction.

Tesseract runs with `OMP_THREAD_LIMIT=1`, set by `import socratext` before any OpenMP runtime starts
(see `socratext/__init__.py`): its OpenMP threads were measured to slow it down on small receipt images,
and the worker parallelises across receipts instead.
"""

from __future__ import annotations

import functools

import pytesseract
from PIL import Image

from socratext.document import OcrPage, Word
from socratext.errors import OCR_FAILED, SocratextError
from socratext.ocr.engine import PageReader
from socratext.ocr.preprocess import PreprocessInfo, preprocess_with_info
from socratext.settings import Settings, get_settings

DEFAULT_PSM = 6
"""Page segmentation "one uniform block of text": on 30 SROIE training receipts it read the most words
(recall 0.725 vs 0.706 for psm 4, 0.68 for the default psm 3, 0.64 for sparse psm 11; see
bench/results/ocr.json), and it keeps an item's name and price on one line, which field assembly needs."""

DEFAULT_OEM = 1  # LSTM only: the legacy engine is not shipped in every tessdata package


class TesseractEngine(PageReader):
    """What every Tesseract backend shares — its options (languages, page segmentation, engine mode) and
    the callable `ocr(images) -> list[OcrPage]` — so the backends stay interchangeable behind
    `socratext.ocr.make_ocr`; a backend implements `read(image)` only."""

    name = "tesseract"

    def __init__(self, languages: str | None = None, psm: int = DEFAULT_PSM, oem: int = DEFAULT_OEM,
                 preprocess: bool = True, settings: Settings | None = None, timeout_s: float = 120.0,
                 extra_config: str | None = None) -> None:
        self.settings = settings or get_settings()
        self.languages = languages or self.settings.ocr_languages
        self.psm = psm
        self.oem = oem
        self.preprocess = preprocess
        self.timeout_s = timeout_s
        self.extra_config = self.settings.ocr_tesseract_config if extra_config is None else extra_config
        self.config = f"--psm {self.psm} --oem {self.oem} {self.extra_config}".strip()
        """Every option that changes what is read, as a tesseract command line (also the OCR caches' key)."""
        # OMP_THREAD_LIMIT=1 is already in the environment (set by `import socratext`, before libtesseract's
        # OpenMP runtime could read it); pytesseract's tesseract subprocesses inherit it from there.

    def prepare_with_info(self, img: Image.Image) -> tuple[Image.Image, PreprocessInfo]:
        """The image this engine reads and its boxes refer to (`socratext.ocr.preprocess`), with the scale
        and angle applied: each engine has its own, since what helps Tesseract (enlarging small scans)
        only costs a deep OCR time."""
        return preprocess_with_info(img, self.settings)


class TesseractOcr(TesseractEngine):
    """Callable OCR engine: `ocr(images) -> list[OcrPage]`, one page per image, in order."""

    @functools.cached_property
    def version(self) -> str:
        try:
            return str(pytesseract.get_tesseract_version())
        except (pytesseract.TesseractNotFoundError, OSError) as e:
            raise SocratextError(OCR_FAILED, f"tesseract is not installed: {e}") from e

    def read(self, img: Image.Image) -> OcrPage:
        """OCR one already-preprocessed image."""
        try:
            data = pytesseract.image_to_data(img, lang=self.languages, config=self.config,
                                             output_type=pytesseract.Output.DICT, timeout=self.timeout_s)
        except pytesseract.TesseractNotFoundError as e:
            raise SocratextError(OCR_FAILED, "tesseract is not installed or not on PATH") from e
        except pytesseract.TesseractError as e:
            raise SocratextError(OCR_FAILED, f"tesseract failed: {e.message!s}".strip()) from e
        except RuntimeError as e:  # pytesseract's timeout
            raise SocratextError(OCR_FAILED, f"tesseract: {e}") from e
        except OSError as e:
            raise SocratextError(OCR_FAILED, f"cannot run tesseract: {e}") from e
        return words_from_data(data, img.width, img.height)


def words_from_data(data: dict[str, list], width: int, height: int) -> OcrPage:
    """Turn pytesseract's `image_to_data` dict into an `OcrPage` (pure, so it is tested without OCR).

    Only word rows (level 5) with visible text are kept. Tesseract numbers lines within paragraphs
    within blocks; one running `line_id` per (block, paragraph, line), in the order Tesseract reads
    them, is what downstream line grouping needs. Confidences go from 0–100 to [0, 1].
    """
    words: list[Word] = []
    line_ids: dict[tuple[int, int, int], int] = {}
    for i, text in enumerate(data.get("text", [])):
        if int(data["level"][i]) != 5:
            continue
        text = str(text).strip()
        if not text:
            continue
        key = (int(data["block_num"][i]), int(data["par_num"][i]), int(data["line_num"][i]))
        line_id = line_ids.setdefault(key, len(line_ids))
        x0, y0 = int(data["left"][i]), int(data["top"][i])
        x1, y1 = x0 + int(data["width"][i]), y0 + int(data["height"][i])
        x0, x1 = max(0, min(x0, width)), max(0, min(x1, width))
        y0, y1 = max(0, min(y0, height)), max(0, min(y1, height))
        conf = float(data["conf"][i])
        conf = min(1.0, max(0.0, conf / 100.0)) if conf >= 0 else 0.0
        words.append(Word(text=text, box=(x0, y0, x1, y1), confidence=conf, line_id=line_id,
                          block_id=key[0]))
    return OcrPage(words=words, width=width, height=height)
