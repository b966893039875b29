"""The one data model of a receipt, from OCR words to the `receipt extracted` event.

Every stage speaks in these objects (after mindee/doctr's `io/elements.py`): the OCR produces an
`OcrPage` of `Word`s, an extractor gives one `WordLabel` per word, field assembly turns those into a
`Receipt`, and `Receipt.export()` is the JSON output contract (CLI output and Kafka event alike).
Boxes are kept in pixels of the (preprocessed) image the OCR saw; `Word.norm_box` gives the 0–1000
LayoutLM convention (origin top-left) that the layout models consume.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

BoxT = tuple[int, int, int, int]


def normalize_box(box: BoxT, width: int, height: int) -> BoxT:
    """Scale a pixel box to LayoutLM's 0–1000 grid, clamped so that bad OCR boxes cannot overflow."""
    x0, y0, x1, y1 = box
    w, h = max(width, 1), max(height, 1)

    def clamp(v: float) -> int:
        return max(0, min(1000, int(round(v))))

    return (clamp(1000 * x0 / w), clamp(1000 * y0 / h), clamp(1000 * x1 / w), clamp(1000 * y1 / h))


CONFIDENCE_DECIMALS = 4
"""A word's OCR confidence as every event and record carries it (`Word.export`)."""


@dataclass(frozen=True)
class Word:
    """One OCR word: its text, pixel box `(x0, y0, x1, y1)`, OCR confidence in [0, 1] and its line."""

    text: str
    box: BoxT
    confidence: float = 1.0
    line_id: int = 0
    block_id: int = 0

    def export(self) -> dict[str, Any]:
        return {"text": self.text, "box": list(self.box),
                "confidence": round(self.confidence, CONFIDENCE_DECIMALS),
                "line_id": self.line_id, "block_id": self.block_id}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Word:
        return cls(str(d["text"]), tuple(map(int, d["box"])),  # type: ignore[arg-type]
                   float(d.get("confidence", 1.0)), int(d.get("line_id", 0)), int(d.get("block_id", 0)))


def page_receipt_id(receipt_id: str, page_number: int, page_count: int) -> str:
    """A multi-page PDF is one receipt per page: `<id>-p<N>` (1-based); a single page keeps its id. The
    batch tool and the OCR stage both name pages so, which makes their outputs comparable."""
    return receipt_id if page_count == 1 else f"{receipt_id}-p{page_number}"


@dataclass
class OcrPage:
    """The OCR result of one receipt image: words in reading order and the image size they refer to."""

    words: list[Word]
    width: int
    height: int

    def norm_boxes(self) -> list[BoxT]:
        """Every word's `normalize_box`, computed for the whole page at once: the same float operations
        (`1000 * x / width`, round half to even, clamp) as one box at a time, 4-5x faster, and the
        extraction stage does this for every page on its one host thread (bench/bench_extract_steps.py)."""
        if not self.words:
            return []
        scaled = np.array([w.box for w in self.words], dtype=np.int64) * 1000
        size = np.array([max(self.width, 1), max(self.height, 1)] * 2, dtype=np.int64)
        grid = np.clip(np.rint(scaled / size), 0, 1000).astype(np.int64)
        return list(map(tuple, grid.tolist()))

    def lines(self) -> list[list[int]]:
        """Word indices grouped by `line_id`, lines in order of first appearance (reading order)."""
        groups: dict[int, list[int]] = {}
        for i, w in enumerate(self.words):
            groups.setdefault(w.line_id, []).append(i)
        return list(groups.values())

    def export(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "words": [w.export() for w in self.words]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OcrPage:
        return cls(words=[Word.from_dict(w) for w in d["words"]], width=int(d["width"]),
                   height=int(d["height"]))

    def as_exported(self) -> OcrPage:
        """This page with its confidences at the precision an event carries them: what the OCR stage
        hands on, so that a page read in-process (the CLI) and the same page read back from an OCR
        event (the worker) are equal, and so are the receipts assembled from them (ties between two
        candidates are broken by confidence)."""
        if all(round(w.confidence, CONFIDENCE_DECIMALS) == w.confidence for w in self.words):
            return self
        words = [replace(w, confidence=round(w.confidence, CONFIDENCE_DECIMALS)) for w in self.words]
        return OcrPage(words=words, width=self.width, height=self.height)


@dataclass(frozen=True)
class WordLabel:
    """An extractor's verdict on one word: a label of `socratext.labels.WORD_LABELS` and its probability."""

    label: str
    probability: float = 1.0


@dataclass
class FieldValue:
    """A normalised field value with the words it came from (provenance) and a confidence in [0, 1]."""

    value: str
    confidence: float
    text: str
    boxes: list[list[int]] = field(default_factory=list)

    def export(self) -> dict[str, Any]:
        return {"value": self.value, "confidence": round(float(self.confidence), 4), "text": self.text,
                "boxes": [list(b) for b in self.boxes]}


@dataclass
class VatLine:
    rate: str | None = None
    base: str | None = None
    amount: str | None = None

    def export(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Item:
    name: str
    quantity: str | None = None
    unit_price: str | None = None
    total_price: str | None = None
    confidence: float = 0.0

    def export(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        for k in ("quantity", "unit_price", "total_price"):
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        out["confidence"] = round(float(self.confidence), 4)
        return out


@dataclass
class Receipt:
    """Everything extracted from one receipt; `export()` is the output contract (JSON-ready dict)."""

    receipt_id: str
    source: dict[str, str]
    model: dict[str, str]
    fields: dict[str, FieldValue] = field(default_factory=dict)
    vat_lines: list[VatLine] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    confidence: float = 0.0
    needs_review: bool = True
    timings_ms: dict[str, float] = field(default_factory=dict)
    ocr: OcrPage | None = None
    word_labels: list[WordLabel] | None = None

    def export(self) -> dict[str, Any]:
        return {
            "receipt_id": self.receipt_id,
            "source": dict(self.source),
            "model": dict(self.model),
            "fields": {k: v.export() for k, v in self.fields.items()},
            "vat_lines": [v.export() for v in self.vat_lines],
            "items": [i.export() for i in self.items],
            "confidence": round(float(self.confidence), 4),
            "needs_review": bool(self.needs_review),
            "timings_ms": {k: round(float(v), 2) for k, v in self.timings_ms.items()},
        }
