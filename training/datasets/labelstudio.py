"""Label Studio JSON exports (the original Socratext annotation format) as word-labelled pages.

Each task's annotation holds one `rectanglelabels` result per OCR word: `value.x/y/width/height` in
PERCENT of `original_width/original_height`, (x, y) the top-left corner and y growing downwards as in
the image (the original project flipped the y axis when importing; that was a bug and is not copied),
the word in `meta.text`, and a label for about a third of the words. Words without a label are "O".

Label mapping, after inspecting the sample: `magasin` → merchant_name, `date` → date, `total_price` →
total, `taux_tva` → vat_rate, `item_*` → the same item parts. `code_tva` is NOT the VAT number: in the
sample it tags the VAT *code* column of item lines ("1", "C", "E", "6>" ...), which no output field
carries, so it becomes "O" (mapping it to vat_number would teach the model to call item codes VAT
numbers). There are no images; pages get `image=None`, and lines are rebuilt from vertical overlap.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from socratext.document import OcrPage, Word
from socratext.labels import OTHER
from socratext.settings import REPO_ROOT
from training.datasets.common import LabeledPage, group_lines

SAMPLE = REPO_ROOT.parent / "shared" / "data" / "socratext" / "labelstudio_sample.json"

LABEL_MAP = {
    "magasin": "merchant_name",
    "date": "date",
    "total_price": "total",
    "taux_tva": "vat_rate",
    "code_tva": OTHER,
    "item_name": "item_name",
    "item_quantity": "item_quantity",
    "item_unit_price": "item_unit_price",
    "item_total_price": "item_total_price",
}
HELD_OUT_FRACTION = 0.2


def _annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    """The task's most recent non-cancelled annotation."""
    anns = [a for a in task.get("annotations", []) if not a.get("was_cancelled")]
    if not anns:
        return None
    return max(anns, key=lambda a: (a.get("updated_at") or "", a.get("id") or 0))


def task_to_page(task: dict[str, Any]) -> LabeledPage | None:
    """One Label Studio task → `LabeledPage` (None when the task has no usable annotation)."""
    ann = _annotation(task)
    if ann is None:
        return None
    raw: list[tuple[str, tuple[int, int, int, int], str]] = []
    width = height = 0
    for r in ann.get("result", []):
        if r.get("type") not in ("rectanglelabels", "rectangle", "textarea", "labels"):
            continue
        v = r.get("value", {})
        text = " ".join(str(t) for t in (r.get("meta") or {}).get("text", []) if t).strip()
        if not text or "x" not in v:
            continue
        width = int(r.get("original_width") or width or 1000)
        height = int(r.get("original_height") or height or 1000)
        x0 = float(v["x"]) / 100 * width
        y0 = float(v["y"]) / 100 * height
        x1 = x0 + float(v.get("width", 0)) / 100 * width
        y1 = y0 + float(v.get("height", 0)) / 100 * height
        box = (max(0, round(x0)), max(0, round(y0)), min(width, round(x1)), min(height, round(y1)))
        labs = [lab for lab in v.get("rectanglelabels") or v.get("labels") or [] if lab]
        label = LABEL_MAP.get(labs[0], OTHER) if labs else OTHER
        raw.append((text, box, label))
    if not raw:
        return None
    lines = group_lines([b for _, b, _ in raw])
    words, labels = [], []
    for line_id, idx in enumerate(lines):
        for i in idx:
            text, box, label = raw[i]
            words.append(Word(text=text, box=box, line_id=line_id))
            labels.append(label)
    page = OcrPage(words=words, width=width, height=height)
    return LabeledPage(page=page, labels=labels, image=None, source="labelstudio",
                       id=f"labelstudio/{task.get('id')}")


def load_export(path: Path = SAMPLE) -> list[LabeledPage]:
    """Every annotated task of an export, in the export's order of task ids."""
    tasks = json.loads(Path(path).read_text(encoding="utf-8"))
    tasks = sorted(tasks, key=lambda t: t.get("id", 0))
    return [p for p in (task_to_page(t) for t in tasks) if p is not None]


def split(pages: list[LabeledPage]) -> tuple[list[LabeledPage], list[LabeledPage]]:
    """Fixed split like SROIE's: tasks in id order, the last 20 % held out for evaluation."""
    k = int((1 - HELD_OUT_FRACTION) * len(pages))
    return pages[:k], pages[k:]


def iter_export(path: Path = SAMPLE) -> Iterator[LabeledPage]:
    yield from load_export(path)
