"""What every training source turns into (`LabeledPage`), and the pieces the sources share:
OCR with an on-disk cache, and label transfer from ground-truth words onto OCR words.

Why transfer labels onto OCR words: at inference the model sees Tesseract's words — split, merged and
misspelt as Tesseract reads them — not the ground truth's. Training on the same kind of words (each
labelled with the ground-truth word it overlaps most) is what makes the end-to-end figures good.
OCR costs ~0.3–2 s per image, so results are cached under `~/.cache/socratext/ocr/` (outside the repo),
keyed by the image's pixels and the OCR settings.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from socratext.document import BoxT, OcrPage, Word
from socratext.labels import OTHER, WORD_LABELS

CACHE_DIR = Path(os.environ.get("SOCRATEXT_CACHE", Path.home() / ".cache" / "socratext"))
OCR_CACHE_VERSION = "1"


@dataclass
class LabeledPage:
    """One training/evaluation example: OCR words, one word label each, the image (or None), and the
    contract-normalised field values when the source has them (for end-to-end evaluation)."""

    page: OcrPage
    labels: list[str]
    image: Image.Image | None = None
    fields: dict[str, str] = field(default_factory=dict)
    source: str = ""
    id: str = ""

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.page.words):
            raise ValueError(f"{self.id}: {len(self.labels)} labels for {len(self.page.words)} words")
        bad = set(self.labels) - set(WORD_LABELS)
        if bad:
            raise ValueError(f"{self.id}: unknown labels {sorted(bad)}")


# --- OCR with a cache --------------------------------------------------------------------------------

def image_key(img: Image.Image, extra: str) -> str:
    """Cache key of an OCR result: the pixels plus `extra`, every setting that changes what is read."""
    h = hashlib.sha1()
    h.update(f"{OCR_CACHE_VERSION}|{img.mode}|{img.size}|{extra}|".encode())
    h.update(img.tobytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=4)
def _default_engine(backend: str) -> Any:
    """One engine per backend for the process (PP-OCR loads its networks once)."""
    from socratext.ocr import make_ocr
    from socratext.settings import get_settings

    return make_ocr(get_settings(), backend=backend)


def ocr_cached(img: Image.Image, ocr: Any | None = None, cache_dir: Path | None = None,
               ) -> tuple[OcrPage, dict[str, float]]:
    """The configured OCR engine (`make_ocr`: PP-OCR by default, Tesseract with
    SOCRATEXT_OCR_BACKEND=tesserocr) on `img`, cached on disk: a model learns on the words it will be
    given at inference. Returns the page and the preprocessing transform (`scale`, `angle`, source
    `width`/`height`, output `out_w`/`out_h`) needed to map ground-truth boxes of `img` onto the page's
    coordinates."""
    from socratext.settings import get_settings

    ocr = ocr or _default_engine(get_settings().ocr_backend)
    s = ocr.settings
    extra = f"{ocr.languages}|{ocr.config}|{ocr.preprocess}|{s.ocr_max_side}|{s.ocr_deskew}"
    cache = (cache_dir or CACHE_DIR / "ocr")
    path = cache / f"{image_key(img, extra)}.json"
    if path.is_file():
        d = json.loads(path.read_text())
        return OcrPage.from_dict(d["page"]), d["info"]
    if ocr.preprocess:
        seen, pinfo = ocr.prepare_with_info(img)
        info = {"scale": pinfo.scale, "angle": pinfo.angle}
    else:
        seen, info = img, {"scale": 1.0, "angle": 0.0}
    info.update(width=img.width, height=img.height, out_w=seen.width, out_h=seen.height)
    page = ocr.read(seen)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"page": page.export(), "info": info}))
    tmp.replace(path)
    return page, info


def map_box(box: Sequence[float], info: dict[str, float]) -> BoxT:
    """A box of the source image in the preprocessed image's pixels: scaled, then rotated by `-angle`
    about the centre with the canvas grown as `Image.rotate(expand=True)` does (the box's corners are
    rotated and their bounding box taken)."""
    sc, angle = info["scale"], info["angle"]
    x0, y0, x1, y1 = (v * sc for v in box)
    if abs(angle) < 1e-6:
        return (round(x0), round(y0), round(x1), round(y1))
    w, h = info["width"] * sc, info["height"] * sc
    ow, oh = info["out_w"], info["out_h"]
    # Image.rotate(-angle) turns the content clockwise by `angle` on screen (y down).
    t = math.radians(-angle)
    c, s = math.cos(t), math.sin(t)
    pts = []
    for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1)):
        dx, dy = x - w / 2, y - h / 2
        pts.append((ow / 2 + dx * c + dy * s, oh / 2 - dx * s + dy * c))
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return (round(min(xs)), round(min(ys)), round(max(xs)), round(max(ys)))


# --- label transfer ----------------------------------------------------------------------------------

def _norm(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def _inter(a: Sequence[float], b: Sequence[float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


def _area(a: Sequence[float]) -> float:
    return max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])


def transfer_labels(ocr_words: Sequence[Word], gt_boxes: Sequence[Sequence[float]], gt_texts: Sequence[str],
                    gt_labels: Sequence[str], min_cover: float = 0.3) -> list[str]:
    """Give each OCR word the label of the ground-truth word it overlaps most (boxes in the same pixel
    space). Overlap is measured as intersection over the smaller box (OCR merges and splits words, so
    IoU would punish both), weighted by text similarity so that, when an OCR word straddles two
    ground-truth words, the one it actually reads as wins. Words covering nothing labelled are "O"."""
    out = []
    for w in ocr_words:
        wa = _area(w.box)
        best, best_score = OTHER, 0.0
        wt = _norm(w.text)
        for gb, gt, gl in zip(gt_boxes, gt_texts, gt_labels, strict=True):
            inter = _inter(w.box, gb)
            if inter <= 0:
                continue
            cover = inter / max(1.0, min(wa, _area(gb)))
            if cover < min_cover:
                continue
            g = _norm(gt)
            sim = difflib.SequenceMatcher(None, wt, g).ratio() if wt and g else 0.0
            if wt and g and (wt in g or g in wt):
                sim = max(sim, 0.8)
            score = cover * (0.4 + 0.6 * sim)
            if score > best_score:
                best, best_score = gl, score
        out.append(best)
    return out


def split_line_box(text: str, box: Sequence[float]) -> list[tuple[str, BoxT]]:
    """Words of an OCR *line* with boxes: the line's box is shared out horizontally in proportion to the
    characters of each word (a space counts as one), which is what SROIE's line-level boxes allow."""
    words = text.split()
    if not words:
        return []
    x0, y0, x1, y1 = box
    total = sum(len(w) for w in words) + len(words) - 1
    per = (x1 - x0) / max(1, total)
    out = []
    pos = 0
    for w in words:
        a = x0 + pos * per
        b = a + len(w) * per
        out.append((w, (round(a), round(y0), round(b), round(y1))))
        pos += len(w) + 1
    return out


def group_lines(boxes: Sequence[Sequence[float]], min_overlap: float = 0.5) -> list[list[int]]:
    """Group word boxes into text lines by vertical overlap (for sources that have no line ids): words
    are taken top to bottom and join the line whose vertical extent they overlap by at least
    `min_overlap` of the smaller height; lines come out top to bottom, words left to right."""
    order = sorted(range(len(boxes)), key=lambda i: ((boxes[i][1] + boxes[i][3]) / 2, boxes[i][0]))
    lines: list[dict[str, Any]] = []
    for i in order:
        y0, y1 = boxes[i][1], boxes[i][3]
        h = max(1e-6, y1 - y0)
        best, best_ov = None, 0.0
        for ln in lines[-4:]:  # only recent lines can overlap: words arrive in y order
            ov = min(y1, ln["y1"]) - max(y0, ln["y0"])
            frac = ov / max(1e-6, min(h, ln["y1"] - ln["y0"]))
            if frac >= min_overlap and frac > best_ov:
                best, best_ov = ln, frac
        if best is None:
            lines.append({"y0": y0, "y1": y1, "idx": [i]})
        else:
            best["idx"].append(i)
            # keep the line's extent from its first word so a tall word cannot swallow the next line
    for ln in lines:
        ln["idx"].sort(key=lambda i: boxes[i][0])
    lines.sort(key=lambda ln: (ln["y0"] + ln["y1"]) / 2)
    return [ln["idx"] for ln in lines]


VAL_FRACTION = 0.1  # training.train's --val-fraction default; training.evaluate --split validation reads it


def evenly_spaced(items: Sequence[Any], n: int) -> list[Any]:
    """`n` items spread over the whole list, first included (sorted SROIE stems change shop and layout
    along the list, so its first `n` would be a few shops)."""
    if n >= len(items):
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def split_train_val(items: Sequence[Any], val_fraction: float) -> tuple[list[Any], list[Any]]:
    """Deterministic split: the last `val_fraction` of `items` (in the given order) is validation."""
    k = int(round(len(items) * (1 - val_fraction)))
    return list(items[:k]), list(items[k:])
