"""The built-in correction path, for when no Label Studio is at hand: a JSON file of corrected field
values per receipt → word labels on the receipt's review record → labelled records (training data).

    {"<receipt_id>": {"total": "23.40", "date": "2026-11-21", "vat_number": null}, ...}

(or a list of `{"receipt_id": ..., "fields": {...}}`). Values are in the output contract's form (ISO
date, `HH:MM`, amounts with a dot, texts as printed); `null` says the field is not on the receipt.

A corrected field's value is looked for among the OCR words of the receipt: every run of consecutive
words on one line is normalised with the extractor's own normaliser (`socratext.fields.assemble`) and
compared with the value, so "23,40", "23.40 €" and "23,40EUR" all match 23.40 the way the extractor
would read them back; free-text fields (merchant name, address) match by text similarity over one to a
few lines. The shortest matching run wins; between runs as short, the one the model already gave that
label, then one on a line with the field's keyword (TOTAL for total, not SOUS-TOTAL / HT), then the
first in reading order. Every field not corrected keeps the model's predicted labels (the reviewer
accepted them). A receipt with a correction that matches no words is NOT turned into training data — a
cleared label with nothing in its place would teach the model that the field is absent — and is
reported instead.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from socratext.document import OcrPage
from socratext.fields.assemble import NORMALISERS
from socratext.labels import FIELDS, OTHER

TEXT_FIELDS = frozenset({"merchant_name", "merchant_address"})
MAX_SPAN = 6  # words in one value on one line ("1 234,56 EUR", "21 novembre 2026")
MAX_TEXT_LINES = 4
KEYWORDS: dict[str, re.Pattern[str]] = {
    "total": re.compile(r"\bTOTAL\b|\bTTC\b|\bA\s*PAYER\b|\bNET\b", re.I),
    "vat_total": re.compile(r"\bT\.?V\.?A\b", re.I),
}
NOT_KEYWORDS: dict[str, re.Pattern[str]] = {
    "total": re.compile(r"SOUS|\bS/?TOTAL|\bHT\b|SUB", re.I),
}


@dataclass
class Correction:
    """The outcome for one receipt: its reviewed labels, or why it could not be corrected."""

    receipt_id: str
    labels: list[str] | None
    matched: dict[str, list[int]] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)


def load_corrections(path: str | Path) -> dict[str, dict[str, Any]]:
    """The corrections file as {receipt_id: {field: value | None}}; unknown field names are an error."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(doc, list):
        doc = {str(d["receipt_id"]): d.get("fields", {}) for d in doc}
    if not isinstance(doc, dict):
        raise ValueError("corrections must be an object {receipt_id: {field: value}} or a list")
    for rid, fields in doc.items():
        bad = set(fields) - set(FIELDS)
        if bad:
            raise ValueError(f"{rid}: unknown fields {sorted(bad)}; fields are {', '.join(FIELDS)}")
    return doc


def _squash(text: str) -> str:
    return re.sub(r"[\W_]+", "", text).lower()


def _canonical(field_name: str, value: str) -> str:
    if field_name in TEXT_FIELDS:
        return _squash(value)
    norm = NORMALISERS[field_name]
    return norm(value) or value.strip()


def value_spans(page: OcrPage, field_name: str, value: str) -> list[list[int]]:
    """Every shortest run of words (within one line) that reads as `value` for `field_name`."""
    want = _canonical(field_name, value)
    if not want:
        return []
    norm = NORMALISERS[field_name]
    words = page.words
    found: list[list[int]] = []
    best_len = MAX_SPAN + 1
    for line in page.lines():
        for a in range(len(line)):
            for n in range(1, min(MAX_SPAN, len(line) - a, best_len) + 1):
                idx = line[a:a + n]
                if norm(" ".join(words[i].text for i in idx)) == want:
                    if n < best_len:
                        found, best_len = [], n
                    found.append(idx)
                    break
    return found


def text_spans(page: OcrPage, value: str, min_ratio: float = 0.8) -> list[list[int]]:
    """The run of 1..4 consecutive lines most similar to a free-text value; of it, the words that are
    part of the value (a line "CARREFOUR MARKET SIRET 123..." gives only the name's words)."""
    want = _squash(value)
    if not want:
        return []
    lines = page.lines()
    best: tuple[float, int, int] = (0.0, 0, -1)
    for a in range(len(lines)):
        text = ""
        for b in range(a, min(a + MAX_TEXT_LINES, len(lines))):
            text += "".join(_squash(page.words[i].text) for i in lines[b])
            r = difflib.SequenceMatcher(None, text, want, autojunk=False).ratio()
            if r > best[0] + 1e-9:
                best = (r, a, b)
    if best[0] < min_ratio:
        return []
    idx = [i for k in range(best[1], best[2] + 1) for i in lines[k]
           if _squash(page.words[i].text) and _squash(page.words[i].text) in want]
    return [idx] if idx else []


def _line_text(page: OcrPage, i: int) -> str:
    lid = page.words[i].line_id
    return " ".join(w.text for w in page.words if w.line_id == lid)


def choose_span(page: OcrPage, field_name: str, spans: Sequence[list[int]],
                predicted: Sequence[str] | None = None) -> list[int] | None:
    """Of equally short matching runs, the one the model labelled, then a keyword line, then the first."""
    if not spans:
        return None

    def rank(k: int) -> tuple[float, int, int]:
        idx = spans[k]
        agreed = sum(predicted[i] == field_name for i in idx) / len(idx) if predicted else 0.0
        line = _line_text(page, idx[0])
        kw = KEYWORDS.get(field_name)
        nkw = NOT_KEYWORDS.get(field_name)
        keyword = int(bool(kw and kw.search(line)) and not (nkw and nkw.search(line)))
        return (-agreed, -keyword, k)

    return spans[min(range(len(spans)), key=rank)]


def correct(record: dict[str, Any], fields: dict[str, Any]) -> Correction:
    """A review record + corrected field values → reviewed word labels (see the module docstring)."""
    page = OcrPage.from_dict(record["page"])
    predicted = [p["label"] for p in record["predictions"]]
    labels = list(predicted)
    out = Correction(record["receipt_id"], None)
    for name, value in fields.items():
        labels = [OTHER if lab == name else lab for lab in labels]
        if value is None or str(value).strip() == "":
            continue
        spans = (text_spans(page, str(value)) if name in TEXT_FIELDS
                 else value_spans(page, name, str(value)))
        idx = choose_span(page, name, spans, predicted)
        if idx is None:
            out.unmatched.append(name)
            continue
        for i in idx:
            labels[i] = name
        out.matched[name] = idx
    if not out.unmatched:
        out.labels = labels
    return out
