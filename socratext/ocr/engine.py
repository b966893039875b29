"""What every OCR engine shares, whichever library reads: the page reader's interface, and a pool of
library engines for those that are not thread-safe.

`PageReader` gives `prepare` / `ocr(images)` / `run(images)` on top of an engine's own
`prepare_with_info` (its preprocessing: each engine has its own) and `read` (one prepared image), so the
pipeline, the CLI and training call every engine the same way. `EnginePool` keeps one library engine per
concurrent `read`: neither libtesseract's API object nor a rapidocr engine may be shared by two threads,
and starting one costs model loading, so they are kept and lent out.
"""

from __future__ import annotations

import queue
from typing import Any

from PIL import Image

from socratext.document import OcrPage
from socratext.ocr.preprocess import PreprocessInfo


class PageReader:
    """An OCR engine's calls. Subclasses set `preprocess` and implement `prepare_with_info` and `read`."""

    preprocess: bool = True

    def prepare_with_info(self, img: Image.Image) -> tuple[Image.Image, PreprocessInfo]:
        """The image this engine reads (its boxes refer to it), with the scale and angle applied
        (training maps true boxes onto the words with them)."""
        raise NotImplementedError

    def read(self, img: Image.Image) -> OcrPage:
        """OCR one already-prepared image."""
        raise NotImplementedError

    def prepare(self, img: Image.Image) -> Image.Image:
        """The image this engine reads and its boxes refer to."""
        return self.prepare_with_info(img)[0]

    def __call__(self, images: list[Image.Image]) -> list[OcrPage]:
        return [page for page, _ in self.run(images)]

    def run(self, images: list[Image.Image]) -> list[tuple[OcrPage, Image.Image]]:
        """OCR each image; also return the image the boxes refer to (for models that look at pixels)."""
        out = []
        for img in images:
            seen = self.prepare(img) if self.preprocess else img
            out.append((self.read(seen), seen))
        return out


class EnginePool:
    """Mixin: library engines lent one per concurrent call. Subclasses implement `_new_engine` (and
    `_end_engine` when an engine must be freed explicitly) and call `_start_pool()` once configured."""

    _idle: queue.SimpleQueue[Any]

    def _start_pool(self) -> None:
        """Start one engine now, so that a missing package or model fails at start-up, not per receipt."""
        self._idle = queue.SimpleQueue()
        self._release(self._acquire())

    def _new_engine(self) -> Any:
        raise NotImplementedError

    def _end_engine(self, engine: Any) -> None:
        """Free one engine (nothing to do where dropping the reference frees it)."""

    def _acquire(self) -> Any:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return self._new_engine()

    def _release(self, engine: Any) -> None:
        self._idle.put(engine)

    def close(self) -> None:
        """Free the pooled engines (they are also freed with this object)."""
        while True:
            try:
                self._end_engine(self._idle.get_nowait())
            except queue.Empty:
                return
