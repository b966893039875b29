"""SROIE (ICDAR 2019) receipts as word-labelled pages: key values matched back onto the OCR lines.

SROIE gives line-level OCR (`box/NNN.csv`) and four key values per receipt (`key/NNN.json`), but no
word labels; they are derived here:

- `date`: the words of the line text that contain the key's date string (exact, after squashing spaces);
- `total`: words whose amount equals the key's total, preferring rows that say TOTAL (not SUBTOTAL),
  then rows with other payable-amount keywords, else the first occurrence (a row: the SROIE segments
  printed side by side, `row_texts`);
- `merchant_name` / `merchant_address`: fuzzy — the line (or two consecutive lines) most similar to the
  company name, and the longest run of lines whose tokens are (mostly) tokens of the address.

Line boxes are shared out over their words by character count. With `ocr=True` the receipt is read by
Tesseract (cached) and the labels are transferred onto Tesseract's words by box overlap, so training
sees the words inference will see. Split: sorted stems, the last 20 % held out — `train_stems()` never
returns them.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from socratext.document import OcrPage, Word
from socratext.labels import OTHER
from socratext.settings import REPO_ROOT
from training.datasets.common import (
    LabeledPage,
    group_lines,
    map_box,
    ocr_cached,
    split_line_box,
    transfer_labels,
)

SROIE_DIR = REPO_ROOT.parent / "shared" / "data" / "sroie"
KEY_TO_FIELD = {"company": "merchant_name", "address": "merchant_address", "date": "date", "total": "total"}
HELD_OUT_FRACTION = 0.2


def all_stems(root: Path = SROIE_DIR) -> list[str]:
    return sorted(p.stem for p in (root / "img").glob("*.jpg"))


def train_stems(root: Path = SROIE_DIR) -> list[str]:
    s = all_stems(root)
    return s[: int((1 - HELD_OUT_FRACTION) * len(s))]


def held_out_stems(root: Path = SROIE_DIR) -> list[str]:
    s = all_stems(root)
    return s[int((1 - HELD_OUT_FRACTION) * len(s)):]


@dataclass
class _Line:
    text: str
    words: list[tuple[str, tuple[int, int, int, int]]]


def read_box_csv(path: Path) -> list[_Line]:
    """SROIE's `x1,y1,...,x4,y4,text` rows (text may contain commas) as lines with word boxes."""
    lines = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = raw.strip().split(",", 8)
        if len(parts) < 9:
            continue
        try:
            xy = [int(float(v)) for v in parts[:8]]
        except ValueError:
            continue
        text = parts[8].strip()
        if not text:
            continue
        xs, ys = xy[0::2], xy[1::2]
        box = (min(xs), min(ys), max(xs), max(ys))
        lines.append(_Line(text=text, words=split_line_box(text, box)))
    return lines


def _squash(t: str) -> str:
    return re.sub(r"\s+", "", t).upper()


def _tokens(t: str) -> list[str]:
    return [x for x in re.split(r"[\s,.;:()]+", t.upper()) if x]


_AMOUNT = re.compile(r"-?\d[\d,]*\.\d{2}|-?\d+")


def _amount(text: str) -> float | None:
    t = text.upper().replace("RM", "").replace("$", "").replace("MYR", "").strip(" :*")
    m = re.fullmatch(r"-?\d{1,3}(,\d{3})*(\.\d{1,2})?|-?\d+(\.\d{1,2})?", t)
    if not m:
        return None
    try:
        return float(t.replace(",", ""))
    except ValueError:
        return None


def _label_substring(line: _Line, value: str) -> list[int]:
    """Indices of the line's words that overlap an occurrence of `value` in the line (spaces ignored)."""
    target = _squash(value)
    if not target:
        return []
    squashed = [_squash(w) for w, _ in line.words]
    joined = "".join(squashed)
    start = joined.find(target)
    if start < 0:
        return []
    end = start + len(target)
    out, pos = [], 0
    for i, s in enumerate(squashed):
        if pos < end and pos + len(s) > start:
            out.append(i)
        pos += len(s)
    return out


def _line_box(line: _Line) -> tuple[int, int, int, int]:
    boxes = [b for _, b in line.words]
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
            max(b[3] for b in boxes))


def row_texts(lines: list[_Line], min_overlap: float = 0.5) -> list[str]:
    """For each SROIE line, the text of its whole printed row: the lines `common.group_lines` puts in its
    row (vertical overlap of at least `min_overlap` of the smaller height), left to right.

    Why: SROIE's "lines" are text segments, and a receipt row is often two of them — "TOTAL :" and, far to
    the right, "9.00". Judging the amount by its own segment alone, the total's keyword is never seen and
    the first occurrence of the amount wins, which is usually an item line above the total (measured on
    the training split: the rules and the derived labels then disagreed on where the total is on more
    than half of the receipts)."""
    boxes = [_line_box(ln) if ln.words else (0, 0, 0, 0) for ln in lines]
    out = [""] * len(lines)
    for row in group_lines(boxes, min_overlap):  # the same row grouping as every other source's words
        text = " ".join(lines[j].text for j in row)
        for j in row:
            out[j] = text
    return out


def label_lines(lines: list[_Line], key: dict[str, Any]) -> tuple[list[list[str]], dict[str, bool]]:
    """Word labels for every line, and which key fields were found."""
    labels = [[OTHER] * len(ln.words) for ln in lines]
    found = {f: False for f in KEY_TO_FIELD.values()}

    # company: best single line or pair of consecutive lines
    company = _squash(str(key.get("company", "")))
    if company:
        best, best_r = None, 0.0
        for i in range(len(lines)):
            for j in (i, i + 1):
                if j >= len(lines):
                    continue
                cand = "".join(_squash(lines[k].text) for k in range(i, j + 1))
                r = difflib.SequenceMatcher(None, cand, company).ratio()
                if r > best_r + 1e-9:
                    best, best_r = (i, j), r
        if best is not None and best_r >= 0.8:
            # only the words that are part of the name: "GARDENIA BAKERIES (KL) SDN BHD (139386-X)" is one
            # OCR line, but the registration number is not the company name
            for k in range(best[0], best[1] + 1):
                labels[k] = ["merchant_name" if _squash(w) and _squash(w) in company else OTHER
                             for w, _ in lines[k].words]
            found["merchant_name"] = any("merchant_name" in labels[k] for k in range(best[0], best[1] + 1))

    # address: the run of consecutive lines whose tokens are mostly address tokens
    addr_tokens = set(_tokens(str(key.get("address", ""))))
    if addr_tokens:
        good = []
        for k, ln in enumerate(lines):
            toks = _tokens(ln.text)
            cover = sum(t in addr_tokens for t in toks) / max(1, len(toks))
            good.append(bool(toks) and cover >= 0.75 and labels[k][0] == OTHER)
        best_run, run = (0, -1, 0), None
        for k, g in enumerate(good + [False]):
            if g and run is None:
                run = k
            elif not g and run is not None:
                covered = set()
                for m in range(run, k):
                    covered |= set(_tokens(lines[m].text)) & addr_tokens
                if len(covered) > best_run[2]:
                    best_run = (run, k - 1, len(covered))
                run = None
        if best_run[2] >= max(2, 0.5 * len(addr_tokens)):
            addr = _squash(str(key.get("address", "")))
            for k in range(best_run[0], best_run[1] + 1):
                labels[k] = ["merchant_address" if _squash(w) and _squash(w) in addr else OTHER
                             for w, _ in lines[k].words]
            found["merchant_address"] = True

    # date: exact substring
    date = str(key.get("date", "")).strip()
    if date:
        for k, ln in enumerate(lines):
            idx = _label_substring(ln, date)
            for i in idx:
                if labels[k][i] == OTHER:
                    labels[k][i] = "date"
            found["date"] = found["date"] or bool(idx)

    # total: amount equality, preferring rows that say TOTAL
    total = _amount(str(key.get("total", "")))
    if total is not None:
        cands: list[tuple[int, int, int]] = []  # (priority, line, word)
        rows = row_texts(lines)
        for k, ln in enumerate(lines):
            up = rows[k].upper()
            if "TOTAL" in up and "SUB" not in up:
                prio = 0
            elif any(kw in up for kw in ("AMOUNT", "NETT", "DUE", "PAYABLE", "ROUND")):
                prio = 1
            else:
                prio = 2
            for i, (w, _) in enumerate(ln.words):
                v = _amount(w)
                if v is not None and abs(v - total) < 1e-6 and labels[k][i] == OTHER:
                    cands.append((prio, k, i))
        if cands:
            top = min(c[0] for c in cands)
            chosen = [c for c in cands if c[0] == top] if top < 2 else [min(cands, key=lambda c: c[1])]
            for _, k, i in chosen:
                labels[k][i] = "total"
            found["total"] = True
    return labels, found


def contract_gold(key: dict[str, Any]) -> dict[str, str]:
    """The key's fields in the output contract's form (date ISO, total decimal, texts as written): what
    the end-to-end evaluation and the label reconciliation compare extracted values with."""
    from socratext.fields.normalize import parse_amount, parse_date

    gold = {}
    for src, dst in KEY_TO_FIELD.items():
        raw = str(key.get(src, "")).strip()
        if not raw:
            continue
        value = {"date": parse_date, "total": parse_amount}.get(src, lambda s: s)(raw)
        if value:
            gold[dst] = value
    return gold


def read_key(stem: str, root: Path = SROIE_DIR) -> dict[str, Any]:
    """A receipt's SROIE key values as stored (`key/NNN.json`)."""
    return json.loads((root / "key" / f"{stem}.json").read_text(encoding="utf-8"))


def load_sroie(stem: str, root: Path = SROIE_DIR, *, ocr: bool = False, ocr_engine: Any | None = None,
               with_image: bool = False) -> tuple[LabeledPage, dict[str, bool]]:
    """One SROIE receipt as a `LabeledPage` (and which key fields were matched)."""
    key = read_key(stem, root)
    lines = read_box_csv(root / "box" / f"{stem}.csv")
    labels, found = label_lines(lines, key)
    img = Image.open(root / "img" / f"{stem}.jpg")
    img.load()
    img = img.convert("RGB")
    gt_words = [w for ln in lines for w in ln.words]
    gt_labels = [lab for row in labels for lab in row]
    if ocr:
        page, info = ocr_cached(img, ocr_engine)
        boxes = [map_box(b, info) for _, b in gt_words]
        word_labels = transfer_labels(page.words, boxes, [t for t, _ in gt_words], gt_labels)
    else:
        words = [Word(text=t, box=b, line_id=k) for k, ln in enumerate(lines) for t, b in ln.words]
        page = OcrPage(words=words, width=img.width, height=img.height)
        word_labels = gt_labels
    image = img if with_image else None
    return LabeledPage(page=page, labels=word_labels, image=image, fields=contract_gold(key), source="sroie",
                       id=f"sroie/{stem}"), found


def iter_sroie(stems: list[str], root: Path = SROIE_DIR, **kwargs: Any) -> Iterator[LabeledPage]:
    for s in stems:
        yield load_sroie(s, root, **kwargs)[0]


def match_rates(stems: list[str], root: Path = SROIE_DIR) -> dict[str, float]:
    """Share of receipts on which each key field was found in the SROIE OCR lines (no Tesseract)."""
    counts = {f: 0 for f in KEY_TO_FIELD.values()}
    for s in stems:
        _, found = label_lines(read_box_csv(root / "box" / f"{s}.csv"), read_key(s, root))
        for f, ok in found.items():
            counts[f] += ok
    return {f: c / max(1, len(stems)) for f, c in counts.items()}
