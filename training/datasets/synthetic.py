"""Synthetic French receipts (`training.synth.generator`) as word-labelled pages.

Two modes: `ocr=False` uses the generator's ground-truth words and boxes directly (free, perfectly
labelled, but cleaner than anything inference will see); `ocr=True` (the default for training) reads
the rendered, degraded image with Tesseract — cached on disk — and transfers each ground-truth word's
label onto the OCR words it overlaps, so the model learns on the split, merged and misread words it
will meet in production. Seeds from 900000 on are the held-out evaluation set: `train_seeds` refuses them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from socratext.document import OcrPage, Word
from training.datasets.common import CACHE_DIR, LabeledPage, map_box, ocr_cached, transfer_labels

HELD_OUT_SEED = 900000


def train_seeds(n: int, start: int = 0) -> list[int]:
    seeds = list(range(start, start + n))
    if seeds and seeds[-1] >= HELD_OUT_SEED:
        raise ValueError(f"training seeds must stay below {HELD_OUT_SEED} (held-out synthetic receipts)")
    return seeds


def cache_path(seed: int, ocr: bool = True, degrade: bool = True, ocr_engine: Any | None = None) -> Path:
    """Where a labelled synthetic page is kept: by seed, mode and, when read by OCR, the engine family
    (Tesseract's pages keep their historical names; PP-OCR's words are another training set)."""
    return CACHE_DIR / "synthetic" / f"{seed}-{_mode(ocr, ocr_engine)}-{int(degrade)}.json"


def _mode(ocr: bool, ocr_engine: Any | None) -> str:
    if not ocr:
        return "gt"
    if ocr_engine is not None:
        family = getattr(ocr_engine, "name", "tesseract")
    else:
        from socratext.settings import get_settings

        family = "ppocr" if get_settings().ocr_backend == "ppocr" else "tesseract"
    return "ocr" if family == "tesseract" else f"ocr_{family}"


def load_synthetic(seed: int, *, ocr: bool = True, degrade: bool = True, ocr_engine: Any | None = None,
                   with_image: bool = False, cache: bool = True) -> LabeledPage:
    """One synthetic receipt as a `LabeledPage`. Without an image requested, the labelled page is cached
    (`~/.cache/socratext/synthetic/`): generating (~1–2 s) and reading (~0.5–10 s on a busy box) a receipt
    dominate the cost of a training run otherwise. The cache is keyed by seed and mode, not by generator
    version: an entry stays a consistent (image, labels) pair even after the generator changes."""
    path = cache_path(seed, ocr, degrade, ocr_engine)
    if cache and not with_image and path.is_file():
        d = json.loads(path.read_text())
        return LabeledPage(page=OcrPage.from_dict(d["page"]), labels=d["labels"], fields=d["fields"],
                           source="synthetic", id=f"synthetic/{seed}")
    lp = _build(seed, ocr=ocr, degrade=degrade, ocr_engine=ocr_engine, with_image=with_image)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"page": lp.page.export(), "labels": lp.labels, "fields": lp.fields}))
        tmp.replace(path)
    return lp


def _build(seed: int, *, ocr: bool, degrade: bool, ocr_engine: Any | None, with_image: bool) -> LabeledPage:
    from training.synth.generator import generate_receipt

    r = generate_receipt(seed, degrade=degrade)
    gt_boxes = [tuple(w.box) for w in r.words]
    gt_texts = [w.text for w in r.words]
    gt_labels = [w.label for w in r.words]
    if ocr:
        page, info = ocr_cached(r.image, ocr_engine)
        mapped = [map_box(b, info) for b in gt_boxes]
        labels = transfer_labels(page.words, mapped, gt_texts, gt_labels)
    else:
        words = [Word(text=w.text, box=tuple(int(v) for v in w.box), line_id=int(w.line_id))  # type: ignore[arg-type]
                 for w in r.words]
        page = OcrPage(words=words, width=r.image.width, height=r.image.height)
        labels = gt_labels
    return LabeledPage(page=page, labels=labels, image=r.image if with_image else None, fields=dict(r.fields),
                       source="synthetic", id=f"synthetic/{seed}")


def iter_synthetic(seeds: list[int], **kwargs: Any) -> Iterator[LabeledPage]:
    for s in seeds:
        yield load_synthetic(s, **kwargs)
