"""Choose the OCR engine from `settings.ocr_backend`: one factory, so every caller gets the same one.

Both engines take the same arguments and return the same `OcrPage`s (`socratext.ocr.tesseract` for the
`tesseract` program per image, `socratext.ocr.tesserocr_backend` for the in-process API). tesserocr is
an optional dependency: asking for it where it cannot run falls back to the program, with a warning,
rather than failing a worker that would work (just slower).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from socratext.settings import Settings, get_settings

log = logging.getLogger(__name__)
BACKENDS = ("pytesseract", "tesserocr", "ppocr")


@functools.lru_cache(maxsize=4)
def _warn_version_mismatch(library: str) -> None:
    """Once per process: a tesserocr linked to another Tesseract than the program reads differently."""
    from socratext.ocr.tesseract import TesseractOcr

    try:
        program = TesseractOcr().version
    except Exception:  # noqa: BLE001 - no program to compare with: nothing to say
        return
    if program.split(".")[:2] != library.split(".")[:2]:
        log.warning("tesserocr uses Tesseract %s but the tesseract program is %s: words can differ from the "
                    "program's (build it against the system library: pip install --no-binary tesserocr "
                    "tesserocr)", library, program)


def make_ocr(settings: Settings | None = None, backend: str | None = None, **kwargs: Any) -> Any:
    """An OCR engine (`TesseractOcr`, `TesserocrOcr` or `PpOcr`) for `backend` (default
    `settings.ocr_backend`); `kwargs` go to its constructor (languages, psm, preprocess, extra_config, ...).
    PP-OCR has no fallback: asking for it where rapidocr is not installed is an error, not Tesseract."""
    from socratext.ocr.tesseract import TesseractOcr

    settings = settings or get_settings()
    backend = backend or settings.ocr_backend
    if backend not in BACKENDS:
        raise ValueError(f"ocr_backend must be one of {BACKENDS}, not {backend!r}")
    if backend == "ppocr":
        from socratext.ocr.ppocr_backend import PpOcr

        return PpOcr(settings=settings, **kwargs)
    if backend == "tesserocr":
        from socratext.errors import SocratextError
        from socratext.ocr import tesserocr_backend

        if not tesserocr_backend.available():
            log.warning("ocr_backend=tesserocr but the tesserocr package is not installed: using pytesseract")
        elif tesserocr_backend.tessdata_dir() is None:
            log.warning("ocr_backend=tesserocr but no tessdata directory was found: using pytesseract")
        else:
            try:
                engine = tesserocr_backend.TesserocrOcr(settings=settings, **kwargs)
                _warn_version_mismatch(engine.version)
                return engine
            except SocratextError as exc:
                # e.g. languages missing from the tessdata found: the program reports the same error
                # per receipt, which is where the CLI backend reports it too.
                log.warning("tesserocr unusable (%s): using pytesseract", exc.message)
    return TesseractOcr(settings=settings, **kwargs)
