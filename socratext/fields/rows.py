"""Visual rows: OCR lines that sit at the same height on the (possibly tilted) receipt, merged.

Tesseract (and SROIE's own OCR) often split one printed row into several lines when there is a wide
gap, e.g. `TOTAL` on the left and `12,50` on the right, and a phone photo is rarely level, so that the
amount at the right end of a row sits lower than its keyword. Both the rules extractor and field
assembly reason about rows, so they share this one definition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median

from socratext.document import OcrPage
from socratext.fields.normalize import fold


@dataclass
class Row:
    """A visual row: words (page indices) left to right, the row's text and each word's offsets in it."""

    words: list[int]
    text: str = ""
    folded: str = ""
    spans: list[tuple[int, int]] = field(default_factory=list)
    top: float = 0.0
    bottom: float = 0.0

    def words_in(self, start: int, end: int) -> list[int]:
        return [w for w, (s, e) in zip(self.words, self.spans, strict=True) if s < end and start < e]


def _skew(page: OcrPage) -> float:
    """Median slope (dy/dx) of the OCR lines: photos are rarely level, and on a tilted receipt the
    amount at the right end of a row sits a line lower than its keyword at the left end."""
    slopes = []
    for idxs in page.lines():
        if len(idxs) < 2:
            continue
        a, b = page.words[idxs[0]].box, page.words[idxs[-1]].box
        dx = (b[0] + b[2]) / 2 - (a[0] + a[2]) / 2
        if dx > 0.2 * page.width:
            slopes.append(((b[1] + b[3]) / 2 - (a[1] + a[3]) / 2) / dx)
    if len(slopes) < 3:
        return 0.0
    return max(-0.15, min(0.15, median(slopes)))


def build_rows(page: OcrPage) -> list[Row]:
    """Merge OCR lines whose (deskewed) vertical centres align into visual rows, top to bottom."""
    slope = _skew(page)

    def level_y(i: int) -> float:
        b = page.words[i].box
        return (b[1] + b[3]) / 2 - slope * (b[0] + b[2]) / 2

    lines = []
    for idxs in page.lines():
        boxes = [page.words[i].box for i in idxs]
        cy = sum(level_y(i) for i in idxs) / len(idxs)
        lines.append((idxs, cy, min(b[1] for b in boxes), max(b[3] for b in boxes)))
    if not lines:
        return []
    med_h = median(max(1, page.words[i].box[3] - page.words[i].box[1]) for idxs, *_ in lines for i in idxs)
    lines.sort(key=lambda t: t[1])
    groups: list[tuple[list[int], float, float, float]] = []  # (words, centre of the first line, top, bottom)
    for idxs, cy, y0, y1 in lines:
        if groups:
            g_words, gc, g0, g1 = groups[-1]
            if abs(cy - gc) < 0.5 * med_h and not _overlaps_x(page, g_words, idxs):
                groups[-1] = (g_words + idxs, gc, min(g0, y0), max(g1, y1))
                continue
        groups.append((list(idxs), cy, y0, y1))
    rows = []
    for idxs, _, y0, y1 in groups:
        idxs = sorted(idxs, key=lambda i: page.words[i].box[0])
        row = Row(words=idxs, top=y0, bottom=y1)
        pos, parts = 0, []
        for i in idxs:
            t = page.words[i].text
            row.spans.append((pos, pos + len(t)))
            parts.append(t)
            pos += len(t) + 1
        row.text = " ".join(parts)
        row.folded = fold(row.text)
        rows.append(row)
    return rows


def page_rows(page: OcrPage) -> list[Row]:
    """`build_rows(page)`, built once per page and kept on it: the rules, field assembly and row smoothing
    all reason about the same page's rows (building them was ~0.35 ms of the extraction stage's host time
    per receipt, twice). Rows are never changed by their readers; a page is not changed once read (a
    masked page is a new object), and a page whose word list was replaced gets its rows built again."""
    shape = (len(page.words), page.width, page.height)
    cached = page.__dict__.get("_rows")
    if cached is None or cached[0] is not page.words or cached[1] != shape:
        cached = (page.words, shape, build_rows(page))
        page.__dict__["_rows"] = cached
    return list(cached[2])


def _overlaps_x(page: OcrPage, a: list[int], b: list[int]) -> bool:
    """Do two lines at one height print over each other (two lines, not one row)? Word by word: PP-OCR
    sometimes finds a row's article name as a line of its own between the words of a line holding the
    row's count and prices (`1 ... 22.89 22.89` around `Magret de Canard`); their extents overlap, their
    words do not."""
    def overlap(i: int, j: int) -> bool:
        (x0, _, x1, _), (u0, _, u1, _) = page.words[i].box, page.words[j].box
        return min(x1, u1) - max(x0, u0) > 0.2 * min(x1 - x0, u1 - u0)
    return any(overlap(i, j) for i in a for j in b)
