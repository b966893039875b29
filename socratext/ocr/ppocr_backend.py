"""PP-OCR (PaddleOCR's deep detection + recognition networks) through `rapidocr` and onnxruntime.

Why a second engine: on held-out SROIE scans most missed fields were Tesseract misreads of characters
the layout could not fix (`training.evaluate --errors`). PP-OCRv6's recogniser reads those scans far
better, and its weights ship inside the `rapidocr` wheel (`PP-OCRv6_det_small.onnx`,
`PP-OCRv6_rec_small.onnx`, one model for 50 languages with French diacritics), so nothing is fetched
from a model hub at run time (`../shared/notes/ppocr-rapidocr.md`).

What this adapter adds to the library:
- **One engine per thread.** A `RapidOCR` object is not thread-safe (its call mutates shared state,
  RapidOCR issue #724), so `PpOcr` keeps a pool and each `read` borrows its own engine, as the tesserocr
  backend does. onnxruntime releases the GIL, so receipts read on several threads use several cores.
- **Threads set, not inherited.** onnxruntime's default is one intra-op thread per core for every call;
  a worker that already reads one receipt per core would oversubscribe the machine. Each engine gets
  `settings.ocr_intra_op_threads` intra-op threads (1 by default) and one inter-op thread.
- **Rows rebuilt from geometry.** The detector returns text *segments*: a receipt row `Total   8.70`
  comes back as two of them, where field assembly and the rules expect one line. Segments whose
  (deskewed) vertical centres align are merged into one line, words left to right
  (`rows_from_segments`, the same geometry as `socratext.fields.rows.build_rows`).
- **Cheaper on the CPU, the same words.** The detector runs as an int8 copy of the wheel's network
  (`ppocr_int8`, about 3x faster), on the page as scanned rather than enlarged to a 736 px short side
  (`ppocr_det_min_side`), and recognition reads one text line per call instead of padding six to the
  widest (`REC_BATCH_CPU`): together about half the CPU per receipt on SROIE scans, same word recall
  (docs/accuracy.md). A GPU keeps the float detector and batched recognition.
- **CUDA only when it really runs.** With `settings.device` "cuda" the engine asks onnxruntime for its
  CUDA provider; where onnxruntime-gpu or the CUDA libraries are missing it logs an error and reports
  `device == "cpu"` with the reason (`cuda_unavailable`), which the worker exposes as a metric, instead
  of the silent CPU fallback of onnxruntime (RapidOCR PR #711).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from socratext.document import OcrPage, Word
from socratext.errors import OCR_FAILED, SocratextError
from socratext.ocr.engine import EnginePool, PageReader
from socratext.ocr.preprocess import PPOCR_MAX_UPSCALE, PreprocessInfo, preprocess_with_info
from socratext.settings import Settings, get_settings

log = logging.getLogger(__name__)

CUDNN_CONV_ALGO_SEARCH = "HEURISTIC"
"""rapidocr's default, EXHAUSTIVE, re-benchmarks convolution algorithms for every new input shape; with
recognition crops of many widths that made recognition slower on a GPU than on the CPU in a public
report (docling #4167); PaddleX recommends HEURISTIC."""


REC_BATCH_CPU = 1
"""Text lines per recognition call on the CPU. rapidocr pads a batch to its widest line; on the CPU the
padding is pure cost and slightly hurts reading: one line per call read more SROIE words for 17 % less
recognition time than its default 6 (docs/accuracy.md)."""

REC_BATCH_CUDA = 6
"""On a GPU batching is what makes it fast: rapidocr's default."""

REC_HEIGHT = 48
"""The recogniser's input height (PP-OCRv6's, fixed by its training)."""


def available() -> bool:
    """Whether rapidocr and an onnxruntime can be imported (optional dependencies)."""
    try:
        import onnxruntime  # noqa: F401
        import rapidocr  # noqa: F401
    except ImportError:
        return False
    return True


def cuda_provider_available() -> bool:
    """Whether this onnxruntime build can run on CUDA (onnxruntime-gpu with its libraries present)."""
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def quad_to_box(quad: Any, width: int, height: int) -> tuple[int, int, int, int]:
    """The axis-aligned pixel box around a quadrilateral `[[x, y] x 4]`, clamped to the page."""
    pts = np.asarray(quad, dtype=np.float64).reshape(-1, 2)
    x0, y0 = np.floor(pts.min(axis=0))
    x1, y1 = np.ceil(pts.max(axis=0))
    return (int(max(0, min(x0, width))), int(max(0, min(y0, height))),
            int(max(0, min(x1, width))), int(max(0, min(y1, height))))


def rows_from_segments(segments: list[list[Word]], width: int, height: int) -> OcrPage:
    """Merge detected text segments into visual rows: one `line_id` per row, rows top to bottom, words
    left to right (pure, tested without the engine).

    `segments` are the words of each detected text line in their reading order. The merge is
    `build_rows`'s (segments whose deskewed vertical centres are within half a median word height, and
    whose words do not print over each other, form one row), so the OCR event carries the rows the extraction
    stage would otherwise rebuild, and every consumer of `OcrPage.lines()` (the second-pass trigger,
    the rules, evaluation) sees `Total 8.70` as one line.
    """
    from socratext.fields.rows import build_rows

    words = [Word(w.text, w.box, w.confidence, line_id=n, block_id=0)
             for n, seg in enumerate(segments) for w in seg]
    if not words:
        return OcrPage(words=[], width=width, height=height)
    rows = build_rows(OcrPage(words=words, width=width, height=height))
    out = [Word(words[i].text, words[i].box, words[i].confidence, line_id=r, block_id=0)
           for r, row in enumerate(rows) for i in row.words]
    return OcrPage(words=out, width=width, height=height)


def page_from_result(result: Any, width: int, height: int) -> OcrPage:
    """An `OcrPage` from a rapidocr result read with `return_word_box=True`.

    `word_results` holds, per detected line, `(text, score, quad)` per word. A "word" with a space
    inside (rapidocr joins some runs) is split on the spaces, its box shared out by character count,
    so that every `Word` is one token as Tesseract's are.
    """
    segments: list[list[Word]] = []
    for line in getattr(result, "word_results", None) or ():
        seg: list[Word] = []
        for item in line:
            if len(item) < 3 or item[2] is None:
                continue
            text, score, quad = str(item[0]).strip(), float(item[1]), item[2]
            if not text:
                continue
            box = quad_to_box(quad, width, height)
            seg.extend(_split_spaced(text, box, min(1.0, max(0.0, score))))
        if seg:
            segments.append(seg)
    return rows_from_segments(segments, width, height)


def _split_spaced(text: str, box: tuple[int, int, int, int], conf: float) -> list[Word]:
    parts = text.split()
    if len(parts) <= 1:
        return [Word(text, box, conf)]
    x0, y0, x1, y1 = box
    per_char = (x1 - x0) / max(len(text), 1)
    out, pos = [], 0
    for part in parts:
        start = text.index(part, pos)
        pos = start + len(part)
        out.append(Word(part, (round(x0 + start * per_char), y0, round(x0 + pos * per_char), y1), conf))
    return out


class PpOcr(EnginePool, PageReader):
    """Callable OCR engine with the Tesseract engines' interface: `ocr(images) -> list[OcrPage]`,
    `run(images)` (also returning the image read), `read(image)`, `config`, `version`."""

    name = "ppocr"

    def __init__(self, languages: str | None = None, preprocess: bool = True,
                 settings: Settings | None = None, intra_op_threads: int | None = None,
                 **_ignored: Any) -> None:
        # `languages`/`psm`/... are Tesseract's options (make_ocr passes them to every engine); PP-OCRv6's
        # one recogniser reads every Latin-script language, so they are accepted and not used.
        self.settings = settings or get_settings()
        self.languages = languages or self.settings.ocr_languages
        self.preprocess = preprocess
        self.intra_op_threads = (self.settings.ocr_intra_op_threads if intra_op_threads is None
                                 else intra_op_threads)
        self.cuda_requested = self.settings.device == "cuda"
        self.cuda_unavailable = ""
        """Why CUDA was asked for and not used ("" when it is used, or was not asked for)."""
        if self.cuda_requested and not cuda_provider_available():
            self.cuda_unavailable = ("onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu "
                                     "with the CUDA libraries it was built for)")
            log.error("ocr_backend=ppocr with device=cuda, but %s: PP-OCR runs on the CPU",
                      self.cuda_unavailable)
        # "auto" (the default) takes the GPU when onnxruntime-gpu can use one and says nothing otherwise.
        use_cuda = (self.cuda_requested and not self.cuda_unavailable) or (
            self.settings.device == "auto" and cuda_provider_available())
        self.device = "cuda" if use_cuda else "cpu"
        self.detector = self.settings.ppocr_detector if self.device == "cpu" else "float"
        """'int8' or 'float': the network that finds text lines (the int8 one only runs on the CPU)."""
        self.rec_batch = self.settings.ppocr_rec_batch or (REC_BATCH_CPU if self.device == "cpu"
                                                           else REC_BATCH_CUDA)
        self.config = (f"ppocr det=PP-OCRv6-small/{self.detector} rec=PP-OCRv6-small cls=off "
                       f"threads={self.intra_op_threads} max_side={self.settings.ppocr_max_side} "
                       f"det_min_side={self.settings.ppocr_det_min_side} rec_batch={self.rec_batch} "
                       f"rec_min_width={self.settings.ppocr_rec_min_width}")
        """Every option that changes what is read (the OCR caches' key)."""
        self.detector_path = self._detector_path()
        self._start_pool()  # fail now (missing package, unreadable models), not per receipt

    @functools.cached_property
    def version(self) -> str:
        from importlib.metadata import version

        runtime = "onnxruntime-gpu" if self.device == "cuda" else "onnxruntime"
        return f"rapidocr {version('rapidocr')}, {runtime} {version(runtime)}"

    def _params(self) -> dict[str, Any]:
        threads = max(1, int(self.intra_op_threads))
        params: dict[str, Any] = {
            "Global.log_level": "error",
            # Receipts are upright (the preprocessing deskews small tilts): the 180-degree text-line
            # classifier only costs time and sometimes flips a line.
            "Global.use_cls": False,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            **self._det_resize(),
            "Rec.rec_batch_num": self.rec_batch,
            # rapidocr pads every line to at least this width (channels, height, width: the network's own)
            "Rec.rec_img_shape": [3, REC_HEIGHT, self.settings.ppocr_rec_min_width],
        }
        if self.detector_path is not None:
            params["Det.model_path"] = str(self.detector_path)
        if self.device == "cuda":
            params["EngineConfig.onnxruntime.use_cuda"] = True
            params["EngineConfig.onnxruntime.cuda_ep_cfg.cudnn_conv_algo_search"] = CUDNN_CONV_ALGO_SEARCH
        return params

    def _det_resize(self) -> dict[str, Any]:
        return {"Det.limit_type": "min", "Det.limit_side_len": self.settings.ppocr_det_min_side}

    def _detector_path(self) -> Path | None:
        """The int8 detector (built on first use, `ppocr_int8`), or None for the wheel's float one."""
        if self.detector != "int8":
            return None
        from socratext.ocr.ppocr_int8 import int8_detector

        try:
            return int8_detector(self.settings.ppocr_model_cache, self._det_resize(),
                                 lambda img: self.prepare_with_info(img)[0])
        except Exception as e:  # noqa: BLE001 - a failed build is a clear start-up error, not a crash
            raise SocratextError(OCR_FAILED, f"cannot build the int8 PP-OCR detector: {e}") from e

    def _new_engine(self) -> Any:
        try:
            from rapidocr import RapidOCR
        except ImportError as e:
            raise SocratextError(OCR_FAILED, "ocr_backend=ppocr needs the rapidocr and onnxruntime "
                                             "packages (pip install 'socratext[ppocr]')") from e
        try:
            return RapidOCR(params=self._params())
        except Exception as e:  # noqa: BLE001 - rapidocr raises bare Exceptions for bad models/configs
            raise SocratextError(OCR_FAILED, f"cannot start PP-OCR: {e}") from e

    def prepare_with_info(self, img: Image.Image) -> tuple[Image.Image, PreprocessInfo]:
        """The image PP-OCR reads (and the one its boxes refer to): grayscale, tilts of a degree or more
        straightened (rows are rebuilt from the boxes, and a level page keeps a row's words at one height),
        the long side capped at `settings.ppocr_max_side`, never enlarged (`PPOCR_MAX_UPSCALE`)."""
        return preprocess_with_info(img, self.settings, max_side=self.settings.ppocr_max_side,
                                    max_upscale=PPOCR_MAX_UPSCALE)

    def read(self, img: Image.Image) -> OcrPage:
        """OCR one already-prepared image (thread-safe: each call borrows its own engine)."""
        arr = np.asarray(img.convert("RGB"))[:, :, ::-1]  # rapidocr works in OpenCV's BGR order
        engine = self._acquire()
        try:
            result = engine(np.ascontiguousarray(arr), return_word_box=True)
        except Exception as e:  # noqa: BLE001 - an engine error is this receipt's failure, not the worker's
            raise SocratextError(OCR_FAILED, f"PP-OCR failed: {e}") from e
        finally:
            self._release(engine)
        return page_from_result(result, img.width, img.height)
