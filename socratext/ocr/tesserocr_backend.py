"""Tesseract through its C++ API in this process (tesserocr): the engine is loaded once, not per image.

`pytesseract` runs the `tesseract` program for every image: a process start, the fra+eng LSTM models
loaded from disk (~0.25 s of CPU), the image written to a temporary PNG and decoded again, and the TSV
parsed back. That overhead was about half of the CPU time of one receipt. Here each engine keeps its
models loaded for the worker's lifetime, the image goes over in memory, and recognition releases the
GIL, so receipts OCR'd on several threads run on several cores (`bench/bench_ocr_backends.py`).

The Tesseract C++ API object is not thread-safe: `TesserocrOcr` keeps a small pool of engines, one per
thread using it at a time, created on demand (each costs the model load once and some 40 MB).

Output is the same TSV the `tesseract` program writes, parsed by the same `words_from_data`. Built against
the system's libtesseract (`pip install --no-binary tesserocr tesserocr`, needs `libtesseract-dev
libleptonica-dev pkg-config g++`), the words are exactly the program's. The PyPI wheel bundles its own,
newer Tesseract (5.5 while Debian 12 has 5.3): faster, but it read 2.4 points fewer SROIE words than the
5.3 program the preprocessing was tuned on (bench/results/ocr_backends_wheel.json), so `make_ocr` warns
when the two versions differ. The language data comes from the system's tessdata (Debian's
`tesseract-ocr-fra`/`-eng`), found through `TESSDATA_PREFIX` or the `tesseract` program.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from PIL import Image

from socratext.document import OcrPage
from socratext.errors import OCR_FAILED, SocratextError
from socratext.ocr.engine import EnginePool
from socratext.ocr.tesseract import TesseractEngine, words_from_data

TSV_COLUMNS = ("level", "page_num", "block_num", "par_num", "line_num", "word_num", "left", "top", "width",
               "height", "conf", "text")

_TESSDATA_CANDIDATES = ("/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tesseract-ocr/4.00/tessdata",
                        "/usr/share/tessdata", "/usr/local/share/tessdata", "/opt/homebrew/share/tessdata")


def available() -> bool:
    """Whether the tesserocr package can be imported (it is an optional dependency)."""
    try:
        import tesserocr  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def tessdata_dir() -> str | None:
    """Where the `.traineddata` files are: `TESSDATA_PREFIX`, else what the `tesseract` program reports
    (`--list-langs` prints the directory), else the usual install locations; None when none has any.

    The tesserocr wheel's own compiled-in default points inside the build machine, so it must be told.
    """
    env = os.environ.get("TESSDATA_PREFIX")
    if env and any(Path(env).glob("*.traineddata")):
        return env
    exe = shutil.which("tesseract")
    if exe:
        try:
            out = subprocess.run([exe, "--list-langs"], capture_output=True, text=True, timeout=10)
            m = re.search(r'"([^"]+)"', out.stdout + out.stderr)
            if m and any(Path(m.group(1)).glob("*.traineddata")):
                return m.group(1)
        except (OSError, subprocess.SubprocessError):
            pass
    for cand in _TESSDATA_CANDIDATES:
        if any(Path(cand).glob("*.traineddata")):
            return cand
    return None


def parse_tsv(tsv: str) -> dict[str, list[str]]:
    """Tesseract's TSV (`GetTSVText`, no header line) as the column dict `words_from_data` reads.

    A word's text may be empty (the line then has 11 fields); it never contains a tab.
    """
    data: dict[str, list[str]] = {c: [] for c in TSV_COLUMNS}
    for line in tsv.splitlines():
        parts = line.split("\t")
        if len(parts) < len(TSV_COLUMNS) - 1 or not parts[0].isdigit():
            continue  # a header line, or garbage
        parts += [""] * (len(TSV_COLUMNS) - len(parts))
        for col, value in zip(TSV_COLUMNS, parts, strict=False):
            data[col].append(value)
    return data


def parse_variables(extra_config: str) -> dict[str, str]:
    """`-c name=value` pairs of a tesseract command line (what `TesseractOcr(extra_config=...)` takes)."""
    out: dict[str, str] = {}
    tokens = shlex.split(extra_config)
    for i, tok in enumerate(tokens):
        if tok == "-c" and i + 1 < len(tokens) and "=" in tokens[i + 1]:
            name, value = tokens[i + 1].split("=", 1)
            out[name] = value
    return out


class TesserocrOcr(EnginePool, TesseractEngine):
    """Callable OCR engine with `TesseractOcr`'s interface: `ocr(images) -> list[OcrPage]`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.variables = parse_variables(self.extra_config)
        self._start_pool()  # fail now (missing languages, no tessdata), not on the first receipt

    @functools.cached_property
    def version(self) -> str:
        import tesserocr

        first = tesserocr.tesseract_version().split()
        return first[1] if len(first) > 1 else "unknown"

    def _new_engine(self) -> Any:
        try:
            import tesserocr
        except ImportError as e:
            raise SocratextError(OCR_FAILED, "the tesserocr package is not installed") from e
        path = tessdata_dir()
        if path is None:
            raise SocratextError(OCR_FAILED, "no tessdata directory with .traineddata files was found "
                                             "(install tesseract-ocr-eng/-fra or set TESSDATA_PREFIX)")
        try:
            api = tesserocr.PyTessBaseAPI(path=path.rstrip("/") + "/", lang=self.languages,
                                          psm=self.psm, oem=self.oem)
        except (RuntimeError, ValueError) as e:
            raise SocratextError(OCR_FAILED,
                                 f"tesseract cannot load {self.languages!r} from {path}: {e}") from e
        for name, value in self.variables.items():
            if not api.SetVariable(name, value):
                api.End()
                raise SocratextError(OCR_FAILED, f"unknown tesseract variable {name!r}")
        return api

    def _end_engine(self, api: Any) -> None:
        api.End()

    def read(self, img: Image.Image) -> OcrPage:
        """OCR one already-preprocessed image (thread-safe: each call borrows its own engine)."""
        api = self._acquire()
        try:
            api.SetImage(img)
            finished = api.Recognize(int(self.timeout_s * 1000))
            tsv = api.GetTSVText(0) if finished else ""
        except RuntimeError as e:
            raise SocratextError(OCR_FAILED, f"tesseract failed: {e}") from e
        finally:
            api.Clear()
            self._release(api)
        if not finished:
            raise SocratextError(OCR_FAILED, f"tesseract did not finish within {self.timeout_s:g} s")
        return words_from_data(parse_tsv(tsv), img.width, img.height)
