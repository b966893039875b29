"""Field assembly: labelled OCR words → a `Receipt` (values, provenance, items, VAT lines, confidence).

Whatever labelled the words (rules or a layout model), the same pure function turns them into the
output contract: consecutive words with the same label become candidate spans, each span is
normalised (`socratext.fields.normalize`), the best candidate per field wins, and the arithmetic of
the receipt (`socratext.fields.checks`) raises or lowers the confidence so that doubtful receipts are
flagged for review. Card numbers are masked in every text that leaves this function.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal

from socratext.document import FieldValue, Item, OcrPage, Receipt, VatLine, WordLabel
from socratext.fields import checks
from socratext.fields.known import KnownValues
from socratext.fields.normalize import (
    OCR_DIGITS,
    clean_merchant_address,
    clean_merchant_name,
    find_amounts,
    find_dates,
    find_times,
    fold,
    parse_amount,
    parse_currency,
    parse_date,
    parse_payment_method,
    parse_quantity,
    parse_rate,
    parse_siret,
    parse_time,
    parse_vat_number,
    repair_o_zero,
    repair_vat_number,
    siret_is_valid,
    strip_diacritics,
)
from socratext.fields.rows import page_rows
from socratext.labels import FIELDS, ITEM_PARTS, VAT_PARTS
from socratext.privacy import mask_pans as mask_pan  # card numbers out of every output text

KEY_FIELDS: tuple[str, ...] = ("date", "total", "merchant_name")
# Receipts in ringgit are in Malay or English, written without accents: an accent read on a name or
# an address there is the OCR's (`HARDWARÉ`, `JÁLAN`), never the shop's.
UNACCENTED_CURRENCIES = frozenset({"MYR"})
FRENCH_MARKERS = re.compile(r"\bT\.?V\.?A\b|\bTTC\b|\bSIRET\b|\bEUROS?\b")
MULTI_LINE_FIELDS = frozenset({"merchant_name", "merchant_address"})
AMOUNT_FIELDS = frozenset({"total", "vat_total"})
ROW_SEP = {"merchant_name": " "}  # "BIG" / "FERNAND" is "BIG FERNAND"; address lines keep their ", "


def _clean_text(text: str) -> str | None:
    """Free-text fields: collapse spaces, drop decorations such as `****LA COMETE****`."""
    s = re.sub(r"\s+", " ", text).strip(" *=-_#~|:;,—–•·").lstrip(".")
    s = s.strip()
    return s if re.search(r"[^\W_]", s) else None


def _name(text: str) -> str | None:
    return _clean_text(clean_merchant_name(repair_o_zero(text)))


def _address(text: str) -> str | None:
    return _clean_text(clean_merchant_address(repair_o_zero(text)))


def _amount(text: str) -> str | None:
    return parse_amount(text, allow_integer=True)


NORMALISERS: dict[str, Callable[[str], str | None]] = {
    "merchant_name": _name,
    "merchant_address": _address,
    "siret": parse_siret,
    "vat_number": parse_vat_number,
    "date": parse_date,
    "time": parse_time,
    "total": _amount,
    "vat_total": _amount,
    "currency": parse_currency,
    "payment_method": parse_payment_method,
}

# Finders used when a span does not normalise on its own (a model labelled "25" "nov." but not "2026",
# or "TOTAL 12,50"): the value is searched in the whole line, overlapping the span.
FINDERS: dict[str, Callable[[str], list[tuple[int, int, str]]]] = {
    "date": find_dates,
    "time": find_times,
    "total": lambda t: find_amounts(t, space_groups=True),
    "vat_total": find_amounts,
}


@dataclass
class Candidate:
    label: str
    words: list[int]
    value: str
    confidence: float
    order: int


def ocr_factor(page: OcrPage, words: list[int]) -> float:
    """Shrink a confidence when the OCR itself was unsure of the words (0.6 at OCR confidence 0)."""
    if not words:
        return 1.0
    mean = sum(page.words[i].confidence for i in words) / len(words)
    return 0.6 + 0.4 * max(0.0, min(1.0, mean))


def _boost(c: float, strength: float = 0.5) -> float:
    return c + (1.0 - c) * strength


class _Layout:
    """Row bookkeeping shared by the grouping steps: the visual rows (`socratext.fields.rows`), the row
    rank of each word, and row texts with each word's offsets."""

    def __init__(self, page: OcrPage) -> None:
        self.page = page
        self.rows = page_rows(page)
        self.lines = [row.words for row in self.rows]
        self.line_text = [row.text for row in self.rows]
        self.rank: dict[int, int] = {}
        self.offsets: dict[int, tuple[int, int]] = {}
        self.order: list[int] = []  # words in reading order: rows top to bottom, left to right
        for r, row in enumerate(self.rows):
            for i, span in zip(row.words, row.spans, strict=True):
                self.rank[i] = r
                self.offsets[i] = span
                self.order.append(i)

    def text(self, words: list[int], row_sep: str = ", ") -> str:
        """Words joined with spaces inside a row and `row_sep` between rows (`, `: the address convention)."""
        out, prev = "", None
        for i in words:
            r = self.rank[i]
            if prev is not None:
                out += " " if r == prev or out.endswith(",") else row_sep
            out += self.page.words[i].text
            prev = r
        return out


def _row_sep(layout: _Layout, label: str, words: list[int]) -> str:
    """What goes between a field's rows. Names read as one phrase (" "); addresses get the contract's
    ", " (`12 RUE DE LA PAIX` / `75002 PARIS`) unless the receipt prints its own separators — a comma
    inside one of the rows — where the line breaks fall mid-phrase (`LOT G12,GROUND FLOOR,SERI PLAZA` /
    `NO.8,JALAN MAWAR,`) and a space keeps the address as printed (SROIE's keys read it so)."""
    if label != "merchant_address":
        return ROW_SEP.get(label, ", ")
    rows: dict[int, list[str]] = {}
    for i in words:
        rows.setdefault(layout.rank[i], []).append(layout.page.words[i].text)
    printed = any("," in " ".join(texts).rstrip(" ,") for texts in rows.values())
    return " " if printed and len(rows) > 1 else ", "


def _spans(layout: _Layout, labels: list[WordLabel]) -> list[tuple[str, list[int]]]:
    """Consecutive words (reading order) with the same field label. Name and address may run over
    adjacent rows, across unlabelled OCR debris at a row's ends (`Rue de la Gare oes` / `33000 Bordeaux`)."""
    spans: list[tuple[str, list[int]]] = []
    last_pos: int | None = None  # position in reading order of the last span's last word
    for pos, i in enumerate(layout.order):
        name = labels[i].label
        if name not in NORMALISERS:
            continue
        if spans and spans[-1][0] == name and last_pos is not None:
            prev = layout.order[last_pos]
            gap = layout.order[last_pos + 1:pos]
            prev_rank, rank = layout.rank[prev], layout.rank[i]
            if not gap and rank == prev_rank:
                spans[-1][1].append(i)
                last_pos = pos
                continue
            if (name in MULTI_LINE_FIELDS and rank - prev_rank == 1
                    and all(labels[g].label not in NORMALISERS for g in gap) and len(gap) <= 2):
                spans[-1][1].append(i)
                last_pos = pos
                continue
        spans.append((name, [i]))
        last_pos = pos
    return spans


def _normalise_span(layout: _Layout, label: str, words: list[int]) -> tuple[str | None, float]:
    """Value of a span and a factor (1.0 when the span itself normalised, lower for fallbacks)."""
    norm = NORMALISERS[label]
    value = norm(layout.text(words, _row_sep(layout, label, words)))
    if value is not None:
        return value, 1.0
    if label == "vat_number":  # one misread digit: its key and SIREN both check the repair
        value = repair_vat_number(layout.text(words))
        return (value, 0.7) if value is not None else (None, 0.0)
    if label in ("merchant_name", "merchant_address"):
        return None, 0.0
    if label in AMOUNT_FIELDS:  # "TOTAL 1 234,56": the amount inside the span
        found = find_amounts(layout.text(words), space_groups=True)
        if found:
            return found[-1][2], 0.9
    for i in words if label not in AMOUNT_FIELDS else reversed(words):  # a single word may do
        value = norm(layout.page.words[i].text)
        if value is not None:
            return value, 0.9
    finder = FINDERS.get(label)
    if finder is not None:
        rank = layout.rank[words[0]]
        s0 = layout.offsets[words[0]][0]
        s1 = layout.offsets[[w for w in words if layout.rank[w] == rank][-1]][1]
        hits = [v for s, e, v in finder(layout.line_text[rank]) if s < s1 and s0 < e]
        if hits:
            return hits[-1] if label in AMOUNT_FIELDS else hits[0], 0.8
    return None, 0.0


def _candidates(layout: _Layout, labels: list[WordLabel]) -> dict[str, list[Candidate]]:
    out: dict[str, list[Candidate]] = {}
    for order, (label, words) in enumerate(_spans(layout, labels)):
        value, factor = _normalise_span(layout, label, words)
        if value is None:
            continue
        prob = sum(labels[i].probability for i in words) / len(words)
        conf = prob * factor * ocr_factor(layout.page, words)
        out.setdefault(label, []).append(Candidate(label, words, value, conf, order))
    return out


def _pick(label: str, cands: list[Candidate]) -> Candidate:
    """Best candidate: the value most (and most confidently) supported; agreeing candidates (`TOTAL 8,50`
    and `CB 8,50`) reinforce each other. For amounts, among near-best candidates with equal support the
    largest wins (a sub-total or a VAT amount mislabelled `total` is smaller), then the last."""
    support: dict[str, float] = {}
    for c in cands:
        support[c.value] = support.get(c.value, 0.0) + c.confidence
    best_conf = max(c.confidence for c in cands)
    if label in AMOUNT_FIELDS:
        near = [c for c in cands if c.confidence >= best_conf - 0.15]
        chosen = max(near, key=lambda c: (support[c.value], Decimal(c.value), c.order))
    else:
        chosen = max(cands, key=lambda c: (support[c.value], c.confidence, -c.order))
    agreeing = sum(1 for c in cands if c.value == chosen.value) - 1
    conf = max(c.confidence for c in cands if c.value == chosen.value)
    if agreeing:
        conf = _boost(conf, min(0.3, 0.15 * agreeing))
    return Candidate(chosen.label, chosen.words, chosen.value, conf, chosen.order)


def _field_value(layout: _Layout, label: str, cand: Candidate) -> FieldValue:
    text = layout.text(cand.words, _row_sep(layout, label, cand.words))
    value = cand.value
    if label != "siret":
        text, value = mask_pan(text), mask_pan(value)
    return FieldValue(value=value, confidence=round(min(1.0, cand.confidence), 4), text=text,
                      boxes=[list(layout.page.words[i].box) for i in cand.words])


def _group_by_line(layout: _Layout, labels: list[WordLabel], parts: tuple[str, ...],
                   ) -> list[tuple[int, dict[str, list[int]]]]:
    rows: list[tuple[int, dict[str, list[int]]]] = []
    for r, line in enumerate(layout.lines):
        row: dict[str, list[int]] = {}
        for i in line:
            if labels[i].label in parts:
                row.setdefault(labels[i].label, []).append(i)
        if row:
            rows.append((r, row))
    return rows


def _amount_of(layout: _Layout, words: list[int], last: bool) -> str | None:
    value = _amount(layout.text(words))
    if value is not None:
        return value
    found = find_amounts(layout.text(words))
    if found:
        return found[-1][2] if last else found[0][2]
    singles = [v for v in (_amount(layout.page.words[i].text) for i in words) if v is not None]
    if singles:
        return singles[-1] if last else singles[0]
    return None


def _unit_price(layout: _Layout, words: list[int]) -> str | None:
    """A unit price as tills print it beside the article: `(3.50)` is the price in brackets, not a
    refund as a bracketed total would be, and `2,99EUR/kg` is the price of a kilo."""
    text = re.sub(r"^\((.*)\)$", r"\1", layout.text(words).strip())
    text = re.sub(r"\s*/\s*(?:KG|L|U|PC)\.?$", "", text, flags=re.IGNORECASE)
    return _amount(text) or _amount_of(layout, words, last=False)


def _items(layout: _Layout, labels: list[WordLabel]) -> list[Item]:
    """Items line by line; a name line followed by a prices-only line (`2 x 1,10   2,20`) is one item."""
    items: list[Item] = []
    pending: tuple[int, list[int], list[int]] | None = None  # (rank, name words, all words)

    def make(name_words: list[int], row: dict[str, list[int]], words: list[int]) -> Item | None:
        name = _clean_text(repair_o_zero(layout.text(name_words))) if name_words else None
        if name is None:
            return None
        qty = parse_quantity(layout.text(row["item_quantity"])) if "item_quantity" in row else None
        unit = _unit_price(layout, row["item_unit_price"]) if "item_unit_price" in row else None
        total = _amount_of(layout, row["item_total_price"], last=True) if "item_total_price" in row else None
        prob = sum(labels[i].probability for i in words) / len(words)
        conf = prob * ocr_factor(layout.page, words)
        ok = checks.item_consistent(qty or ("1" if unit and total else None), unit, total)
        if ok is True:
            conf = _boost(conf, 0.3)
        elif ok is False:
            conf *= 0.8
        if total is None and unit is None:
            conf *= 0.7
        return Item(name=mask_pan(name), quantity=qty, unit_price=unit, total_price=total,
                    confidence=round(min(1.0, conf), 4))

    def flush() -> None:
        nonlocal pending
        if pending is not None:
            item = make(pending[1], {}, pending[2])
            if item is not None:
                items.append(item)
        pending = None

    for rank, row in _group_by_line(layout, labels, ITEM_PARTS):
        names = row.get("item_name", [])
        has_price = "item_unit_price" in row or "item_total_price" in row
        words = sorted(i for ws in row.values() for i in ws)
        if names and not has_price:
            flush()
            pending = (rank, names, words)
            continue
        if not names and pending is not None and rank - pending[0] <= 2:
            item = make(pending[1], row, pending[2] + words)
            pending = None
        else:
            flush()
            item = make(names, row, words)
        if item is not None:
            items.append(item)
    flush()
    return items


def _vat_lines(layout: _Layout, labels: list[WordLabel]) -> tuple[list[VatLine], list[list[int]]]:
    lines: list[VatLine] = []
    words_of: list[list[int]] = []
    for _, row in _group_by_line(layout, labels, VAT_PARTS):
        rate = None
        if "vat_rate" in row:
            rate = parse_rate(layout.text(row["vat_rate"]))
            if rate is None:
                singles = (parse_rate(layout.page.words[i].text) for i in row["vat_rate"])
                rate = next((r for r in singles if r), None)
        base = _amount_of(layout, row["vat_base"], last=False) if "vat_base" in row else None
        amount = _amount_of(layout, row["vat_amount"], last=False) if "vat_amount" in row else None
        if rate is None and base is None and amount is None:
            continue
        lines.append(VatLine(rate=rate, base=base, amount=amount))
        words_of.append(sorted(i for ws in row.values() for i in ws))
    return lines, words_of


def _paid_amount_matches(layout: _Layout, labels: list[WordLabel], total: Candidate | None,
                         payment: Candidate | None) -> bool | None:
    """The amount printed on the payment line (`CB 12,50`) equals the total: independent evidence."""
    if total is None or payment is None:
        return None
    row = layout.rank[payment.words[0]]
    others = [i for i in layout.lines[row] if i not in total.words and labels[i].label != "payment_method"]
    if not others:
        return None
    return any(v == total.value for _, _, v in find_amounts(layout.text(others), space_groups=True)) or None


def _currency_fallback(layout: _Layout, labels: list[WordLabel]) -> FieldValue | None:
    """No `currency` word: look for €/EUR/RM next to the amounts, then anywhere on the page."""
    amount_labels = {"total", "vat_total", "item_total_price", "item_unit_price", "vat_base", "vat_amount"}
    amount_ranks = {layout.rank[i] for i, lab in enumerate(labels) if lab.label in amount_labels}
    for strength, ranks in ((0.8, sorted(amount_ranks)), (0.6, range(len(layout.lines)))):
        for r in ranks:
            for i in layout.lines[r]:
                code = parse_currency(layout.page.words[i].text)
                if code:
                    word = layout.page.words[i]
                    conf = round(strength * ocr_factor(layout.page, [i]), 4)
                    return FieldValue(value=code, confidence=conf, text=word.text, boxes=[list(word.box)])
    # No sign at all (or the OCR lost it): a receipt that speaks of TVA / TTC / SIRET is French, in euros.
    for r, text in enumerate(layout.line_text):
        m = FRENCH_MARKERS.search(fold(text))
        if m:
            words = layout.rows[r].words_in(m.start(), m.end())
            return FieldValue(value="EUR", confidence=0.4, text=layout.text(words),
                              boxes=[list(layout.page.words[i].box) for i in words])
    return None


def _siret_from_vat(layout: _Layout, labels: list[WordLabel], vat: str) -> Candidate | None:
    """A SIRET span that fails its checksum, repaired with the SIREN of the receipt's (valid) French VAT
    number: at most one digit of its SIREN may differ, and the whole SIRET must then pass the checksum.
    (Alone, a SIRET's single Luhn digit cannot tell which digit was misread.)"""
    siren = vat[4:]
    for order, (label, words) in enumerate(_spans(layout, labels)):
        if label != "siret":
            continue
        digits = re.sub(r"\D", "", fold(layout.text(words)).translate(OCR_DIGITS))
        if len(digits) != 14 or sum(a != b for a, b in zip(digits[:9], siren, strict=True)) > 1:
            continue
        if siret_is_valid(siren + digits[9:]):
            prob = sum(labels[i].probability for i in words) / len(words)
            return Candidate("siret", words, siren + digits[9:], prob * 0.7 * ocr_factor(layout.page, words),
                             order)
    return None


def _correct_known(picked: dict[str, Candidate], known: KnownValues) -> set[str]:
    """Replace misread names and addresses by the known value they are close to; returns which."""
    out = set()
    for label, cand in picked.items():
        fix = known.correct(label, cand.value)
        if fix is not None:
            picked[label] = replace(cand, value=fix.known)
            out.add(label)
    return out


def assemble_receipt(page: OcrPage, labels: list[WordLabel], *, receipt_id: str, source: dict,
                     model: dict, review_threshold: float = 0.75, today: dt.date | None = None,
                     known: KnownValues | None = None) -> Receipt:
    """Build the contract `Receipt` of one page from its words and one `WordLabel` per word.

    `known`: reviewed merchant names and addresses (`socratext.fields.known`); a value read a few OCR
    confusions away from one of them becomes that value, and its confidence rises."""
    if len(labels) != len(page.words):
        raise ValueError(f"{len(labels)} labels for {len(page.words)} words")
    layout = _Layout(page)
    fields: dict[str, FieldValue] = {}
    picked: dict[str, Candidate] = {}
    for label, cands in _candidates(layout, labels).items():
        picked[label] = _pick(label, cands)
    corrected = _correct_known(picked, known) if known is not None else set()
    vat = picked.get("vat_number")
    if "siret" not in picked and vat is not None and re.fullmatch(r"FR\d{11}", vat.value):
        siret = _siret_from_vat(layout, labels, vat.value)
        if siret is not None:
            picked["siret"] = siret

    items = _items(layout, labels)
    vat_lines, _ = _vat_lines(layout, labels)
    conf = {k: c.confidence for k, c in picked.items()}
    value = {k: c.value for k, c in picked.items()}

    def adjust(field: str, ok: bool | None, up: float = 0.5, down: float = 0.7) -> None:
        if field in conf and ok is not None:
            conf[field] = _boost(conf[field], up) if ok else conf[field] * down

    line_checks = [checks.vat_line_consistent(v.rate, v.base, v.amount) for v in vat_lines]
    totals_ok = [
        checks.items_match_total([i.total_price for i in items if i.total_price], value.get("total")),
        checks.vat_bases_match_total([v.base for v in vat_lines if v.base],
                                     [v.amount for v in vat_lines if v.amount], value.get("total")),
        _paid_amount_matches(layout, labels, picked.get("total"), picked.get("payment_method")),
    ]
    if any(ok is True for ok in totals_ok):
        adjust("total", True)
    elif totals_ok[1] is False and not any(ok is False for ok in line_checks):
        adjust("total", False, down=0.8)  # (an unreadable VAT table says nothing about the total)
    vat_amounts = [v.amount for v in vat_lines if v.amount]
    vat_sum_ok = checks.vat_amounts_match_total(vat_amounts, value.get("vat_total"))
    adjust("vat_total", vat_sum_ok, up=0.5, down=0.7)
    if line_checks and all(ok is True for ok in line_checks):
        adjust("vat_total", True, up=0.3)
    elif any(ok is False for ok in line_checks):
        adjust("vat_total", False, down=0.85)
    id_ok = checks.vat_matches_siret(value.get("vat_number"), value.get("siret"))
    adjust("vat_number", id_ok, up=0.4, down=0.6)
    adjust("siret", id_ok, up=0.4, down=0.9)
    adjust("date", checks.date_plausible(value.get("date"), today), up=0.0, down=0.5)
    for label in corrected:
        adjust(label, True, up=0.3)

    for label in FIELDS:
        if label in picked:
            cand = picked[label]
            fields[label] = _field_value(layout, label, Candidate(label, cand.words, cand.value, conf[label],
                                                                  cand.order))
    if "currency" not in fields:
        fallback = _currency_fallback(layout, labels)
        if fallback is not None:
            fields["currency"] = fallback
    if "currency" in fields and fields["currency"].value in UNACCENTED_CURRENCIES:
        for label in ("merchant_name", "merchant_address"):
            if label in fields:
                fields[label] = replace(fields[label], value=strip_diacritics(fields[label].value))
    fields = {k: fields[k] for k in FIELDS if k in fields}

    keys = [fields[k].confidence if k in fields else 0.0 for k in KEY_FIELDS]
    overall = 0.5 * min(keys) + 0.5 * sum(keys) / len(keys)
    return Receipt(receipt_id=receipt_id, source=dict(source), model=dict(model), fields=fields,
                   vat_lines=vat_lines, items=items, confidence=round(overall, 4),
                   needs_review=overall < review_threshold, ocr=page, word_labels=list(labels))


__all__ = ["assemble_receipt", "KEY_FIELDS", "NORMALISERS"]
