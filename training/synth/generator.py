"""Synthetic French receipts with word-level and field-level ground truth.

`generate_receipt(seed)` draws a shop, its goods, a till layout and a typography from `random.Random(seed)`,
computes the arithmetic the way a till does (prices incl. VAT, VAT extracted per rate, rounding to
the cent), prints it as `Line`s whose segments carry word labels, renders it (exact glyph boxes) and,
with `degrade=True`, makes it look like a phone photo while moving the boxes along.

Label conventions (see also the report in docs): only the *value* words of a field are labelled, never
its keyword (`TOTAL` is "O", `12,50` is "total"); the currency sign or code printed on the total line is
"currency"; the tender line's payment keyword is "payment_method" (amounts paid, change, card slips are
"O"); sub-totals, TOTAL HT, amounts saved and card-slip amounts are "O" distractors; discounts are items
with a negative total price.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from PIL import Image

from socratext.document import OcrPage, Word, WordLabel
from training.synth import content as C
from training.synth.content import D, q2
from training.synth.degrade import degrade_image
from training.synth.render import Cell, Line, Seg, SynthWord, Typography, render

__all__ = ["SynthReceipt", "SynthWord", "generate_receipt", "iter_receipts", "receipt_seed", "KINDS"]

KINDS: tuple[str, ...] = tuple(C.SHOP_KINDS)
KIND_WEIGHTS = {"supermarket": 3.5, "bakery": 1.5, "restaurant": 2.0, "pharmacy": 1.5, "diy": 1.5}


@dataclass
class SynthReceipt:
    """A generated receipt: the image, its labelled words and the contract-normalised ground truth."""

    seed: int
    image: Image.Image
    words: list[SynthWord]
    fields: dict[str, str]
    items: list[dict[str, str]]
    vat_lines: list[dict[str, str]]
    field_text: dict[str, str] = field(default_factory=dict)  # fields as printed
    meta: dict[str, Any] = field(default_factory=dict)

    def export(self) -> dict[str, Any]:
        """JSON-ready ground truth (what the CLI writes beside the image)."""
        return {
            "seed": self.seed,
            "width": self.image.width,
            "height": self.image.height,
            "words": [w.export() for w in self.words],
            "fields": dict(self.fields),
            "field_text": dict(self.field_text),
            "items": [dict(i) for i in self.items],
            "vat_lines": [dict(v) for v in self.vat_lines],
            "meta": dict(self.meta),
        }

    def labels(self) -> list[str]:
        return [w.label for w in self.words]

    def page(self) -> OcrPage:
        """The words as a perfect OCR result (confidence 1), e.g. to test field assembly without OCR."""
        words = [Word(w.text, w.box, 1.0, w.line_id) for w in self.words]
        return OcrPage(words=words, width=self.image.width, height=self.image.height)

    def word_labels(self) -> list[WordLabel]:
        return [WordLabel(w.label, 1.0) for w in self.words]


def receipt_seed(base_seed: int, index: int) -> int:
    """Seed of receipt `index` in a set generated with `base_seed` (sets never overlap below 100 000)."""
    return base_seed * 100_000 + index


def iter_receipts(n: int, seed: int, degrade: bool = True) -> Iterator[SynthReceipt]:
    for i in range(n):
        yield generate_receipt(receipt_seed(seed, i), degrade=degrade)


@dataclass
class _Article:
    name: str
    qty: Decimal
    unit: Decimal
    total: Decimal
    rate: Decimal
    by_weight: bool
    discount: bool = False


class _Builder:
    """Builds the printed lines of one receipt and records the ground truth as it prints."""

    def __init__(self, rng: random.Random, typo: Typography):
        self.rng = rng
        self.typo = typo
        self.lines: list[Line] = []
        self.fields: dict[str, str] = {}
        self.field_text: dict[str, str] = {}
        self.items: list[dict[str, str]] = []
        self.vat_lines: list[dict[str, str]] = []
        self.amount_style = "dot" if rng.random() < 0.1 else ("fr" if rng.random() < 0.8 else "fr_compact")

    # -- helpers -------------------------------------------------------------------------------------
    def amt(self, x: Decimal) -> str:
        return C.fmt_amount(x, self.amount_style)

    def add(self, *cells: Cell, style: str = "normal", space_before: float = 0.0) -> Line:
        line = Line(list(cells), style=style, space_before=space_before)
        self.lines.append(line)
        return line

    def rule(self) -> None:
        """A separator: a drawn rule, a row of dashes (an "O" word, as tills print it) or white space."""
        if self.lines and self.lines[-1].rule is not None:
            return
        r = self.rng.random()
        if r < 0.35:
            self.lines.append(Line(rule="solid"))
        elif r < 0.9:
            ch = self.rng.choice("-=-*_")
            n = max(8, int(self.typo.cw / self.typo.text_width(ch)) - 1)
            self.lines.append(Line([Cell([Seg(ch * n)], 0.5, "center")], rule="text"))
        else:
            self.lines.append(Line(rule="blank"))

    def put(self, name: str, text: str, value: str | None = None) -> None:
        """Record a field once: its contract value and the text it was printed as."""
        self.fields[name] = value if value is not None else text
        self.field_text[name] = text


def _L(text: str, label: str = "O") -> Seg:
    return Seg(text, label)


def _pick_articles(rng: random.Random, shop: C.ShopKind) -> list[_Article]:
    n = rng.randint(*shop.n_items)
    goods = list(shop.goods)
    rng.shuffle(goods)
    chosen = [goods[i % len(goods)] for i in range(n)]
    arts: list[_Article] = []
    for p in chosen:
        unit = C.random_price(rng, p)
        if p.by_weight:
            qty = D(rng.randint(120, 2400)) / 1000
        else:
            qty = D(1) if (rng.random() < 0.6 or p.max_qty == 1) else D(rng.randint(2, p.max_qty))
        arts.append(_Article(p.name, qty, unit, q2(qty * unit), p.rate, p.by_weight))
    # Discounts: a negative line right after the article it applies to (same VAT rate).
    if shop.kind in ("supermarket", "pharmacy", "diy") and rng.random() < 0.25:
        for _ in range(rng.randint(1, 2)):
            idx = rng.randrange(len(arts))
            a = arts[idx]
            if a.discount or a.total < D("1.00"):
                continue
            cut = q2(a.total * D(rng.choice(("0.1", "0.2", "0.3", "0.5"))))
            if rng.random() < 0.5:
                cut = max(D("0.10"), q2(D(round(cut))))
            cut = min(cut, a.total - D("0.10"))
            arts.insert(
                idx + 1, _Article(rng.choice(C.DISCOUNT_NAMES), D(1), -cut, -cut, a.rate, False, True)
            )
    return arts


def _vat_breakdown(arts: list[_Article]) -> list[tuple[Decimal, Decimal, Decimal, Decimal]]:
    """(rate, base, vat, ttc) per rate: prices include VAT, so VAT is extracted from the per-rate sum."""
    out = []
    for rate in sorted({a.rate for a in arts}):
        ttc = sum((a.total for a in arts if a.rate == rate), D(0))
        base = q2(ttc / (1 + rate / 100))
        out.append((rate, base, ttc - base, ttc))
    return out


def _build(rng: random.Random, typo: Typography, kind: str) -> _Builder:  # noqa: C901 - one receipt, top to bottom
    b = _Builder(rng, typo)
    shop = C.SHOP_KINDS[kind]
    center = rng.random() < 0.65
    hx, halign = (0.5, "center") if center else (0.0, "left")
    title_case = rng.random() < 0.2

    # ---------------------------------------------------------------- header
    name = rng.choice(shop.names)
    if title_case and rng.random() < 0.5:
        name = C.to_title(name)
    b.put("merchant_name", name)
    b.add(Cell([_L(name, "merchant_name")], hx, halign), style=rng.choice(("title", "big", "bold", "title")))
    if rng.random() < 0.2:
        b.add(
            Cell(
                [
                    _L(
                        rng.choice(
                            (
                                "Bienvenue",
                                "BIENVENUE",
                                "Votre magasin",
                                "Alimentation générale" if kind == "supermarket" else "Bienvenue",
                            )
                        )
                    )
                ],
                hx,
                halign,
            ),
            style="small",
        )
    addr = C.make_address(rng, title_case)
    b.put("merchant_address", addr.value)
    for ln in addr.lines:
        b.add(Cell([_L(ln, "merchant_address")], hx, halign))
    postcode = addr.lines[-1].split(" ")[-2] if len(addr.lines[-1].split(" ")) > 1 else "75001"
    if rng.random() < 0.75:
        phone = C.make_phone(rng, postcode if postcode.isdigit() else "75001")
        if rng.random() < 0.3:
            phone = phone.replace(" ", rng.choice((".", "")))
        b.add(Cell([_L(rng.choice(("Tél :", "TEL", "TEL.", "Tel:", "Téléphone")) + " " + phone)], hx, halign))
    siren = C.make_siren(rng)
    siret = C.make_siret(rng, siren)
    vat = C.make_vat_number(siren)
    id_lines: list[Line] = []
    if rng.random() < 0.8:
        style = rng.randrange(4)
        printed = {
            0: f"{siret[:3]} {siret[3:6]} {siret[6:9]} {siret[9:]}",
            1: siret,
            2: f"{siret[:9]} {siret[9:]}",
            3: f"{siret[:3]} {siret[3:6]} {siret[6:9]} {siret[9:]}",
        }[style]
        kw = rng.choice(("SIRET :", "SIRET", "Siret:", "N° SIRET", "SIRET N°"))
        b.put("siret", printed, siret)
        id_lines.append(Line([Cell([_L(kw), _L(printed, "siret")], hx, halign)], style="small"))
    if rng.random() < 0.6:
        style = rng.randrange(3)
        printed = {
            0: vat,
            1: f"FR {vat[2:4]} {vat[4:]}",
            2: f"FR{vat[2:4]} {vat[4:7]} {vat[7:10]} {vat[10:]}",
        }[style]
        kw = rng.choice(
            ("TVA INTRA :", "N° TVA :", "TVA", "N°TVA intracom.", "TVA intracommunautaire :", "N° TVA intra")
        )
        b.put("vat_number", printed, vat)
        id_lines.append(Line([Cell([_L(kw), _L(printed, "vat_number")], hx, halign)], style="small"))
    if rng.random() < 0.25:
        city = addr.lines[-1].split(" ", 1)[-1].upper()
        id_lines.append(
            Line(
                [Cell([_L(f"RCS {city} B {siren[:3]} {siren[3:6]} {siren[6:]}")], hx, halign)], style="small"
            )
        )
    if rng.random() < 0.2:
        legal = rng.choice(shop.legal_forms)
        cap = rng.choice(("7 500", "10 000", "37 000", "150 000", "1 000 000"))
        id_lines.append(Line([Cell([_L(f"{legal} au capital de {cap} €")], hx, halign)], style="small"))
    rng.shuffle(id_lines)
    b.lines.extend(id_lines)

    # ---------------------------------------------------------------- date and till info
    year = rng.randint(2019, 2027)
    month = rng.randint(1, 12)
    day = rng.randint(1, 28 if month == 2 else (30 if month in (4, 6, 9, 11) else 31))
    hour, minute, second = rng.randint(7, 22), rng.randint(0, 59), rng.randint(0, 59)
    date_txt = C.fmt_date(year, month, day, rng.choice(C.DATE_STYLES))
    time_txt = C.fmt_time(hour, minute, second, rng.choice(C.TIME_STYLES))
    b.put("date", date_txt, f"{year}-{month:02d}-{day:02d}")
    with_time = rng.random() < 0.92
    if with_time:
        b.put("time", time_txt, f"{hour:02d}:{minute:02d}")
    ticket_no = f"{rng.randint(1, 9999):04d}"
    till = f"{rng.randint(1, 12):02d}"

    def date_line() -> None:
        v = rng.randrange(6)
        d, t = _L(date_txt, "date"), ([_L(time_txt, "time")] if with_time else [])
        if v == 0:
            b.add(Cell([d], 0.0), *([Cell(t, 1.0, "right")] if t else []))
        elif v == 1:
            at = [_L(rng.choice(("à", "a", "-"))), *t] if t else []
            b.add(Cell([_L(rng.choice(("Le", "le", "Date :"))), d, *at], 0.0))
        elif v == 2:
            b.add(
                Cell([_L(rng.choice(("DATE:", "Date :", "DATE"))), d], 0.0),
                *([Cell([_L(rng.choice(("HEURE:", "Heure :", "H:"))), *t], 1.0, "right")] if t else []),
            )
        elif v == 3:
            b.add(Cell([d, *t], 0.0), Cell([_L(f"TICKET {ticket_no}")], 1.0, "right"))
        elif v == 4:
            b.add(Cell([d, *t], 0.5, "center"))
        else:
            b.add(Cell([d, *t, _L(f"{till} {ticket_no} {rng.randint(100, 999)}")], 0.0))

    date_on_top = rng.random() < 0.6
    b.rule()
    if kind == "restaurant" and rng.random() < 0.8:
        b.add(
            Cell([_L(f"TABLE {rng.randint(1, 40)}")], 0.0),
            Cell([_L(f"COUVERTS {rng.randint(1, 6)}")], 1.0, "right"),
        )
        b.add(Cell([_L(f"Serveur : {rng.choice(C.CASHIERS).capitalize()}")], 0.0))
    if date_on_top:
        date_line()
    if rng.random() < 0.5:
        b.add(
            Cell([_L(f"CAISSE {till}")], 0.0),
            Cell([_L(f"CAISSIER {rng.choice(C.CASHIERS)}")], 1.0, "right"),
            style="small",
        )
    b.rule()

    # ---------------------------------------------------------------- articles
    arts = _pick_articles(rng, shop)
    layout = rng.choices(
        ("simple", "qty_lines", "columns", "name_cols", "qty_name"),
        weights=(2, 3, 2, 1, 2 if kind == "restaurant" else 0.5),
    )[0]
    codes = rng.random() < 0.35
    code_of = {r: c for r, c in zip(C.VAT_RATES, rng.choice(("ABCD", "1234", "CDAB")), strict=True)}
    euro_items = rng.random() < 0.12
    titled_items = rng.random() < (0.35 if kind == "restaurant" else 0.12)  # "Cafe Gourmand", not all caps
    amt_right = 1.0 if not codes else 1.0 - (typo.text_width("  A") / typo.cw)

    def money(x: Decimal, label: str) -> list[Seg]:
        out = [_L(b.amt(x), label)]
        if euro_items:
            out.append(_L("€"))
        return out

    def tail(a: _Article) -> list[Cell]:
        return [Cell([_L(code_of[a.rate])], 1.0, "right")] if codes else []

    def truth(a: _Article, name: Seg, *printed: str) -> dict[str, str]:
        """An item's ground truth: name and total, plus only the parts its layout printed."""
        item = {"name": name.text}
        if "quantity" in printed:
            item["quantity"] = C.contract_quantity(a.qty)
        if "unit_price" in printed:
            item["unit_price"] = C.contract_amount(a.unit)
        item["total_price"] = C.contract_amount(a.total)
        return item

    qty_decimals = rng.random() < 0.2  # "2.00" / "2,00" instead of "2", as some tills print it

    def qty_txt(a: _Article) -> str:
        if a.by_weight:
            return f"{a.qty:.3f}".replace(".", ",")
        if qty_decimals and layout != "simple":
            return b.amt(a.qty)
        return str(int(a.qty))

    if layout in ("columns", "name_cols", "qty_name") and rng.random() < 0.8:
        hdr = {
            "columns": [
                ("QTE", 0.0, "left"),
                ("DESIGNATION", 0.12, "left"),
                ("P.U.", 0.74, "right"),
                ("MONTANT", amt_right, "right"),
            ],
            "name_cols": [
                ("Désignation", 0.0, "left"),
                ("Qté", 0.55, "right"),
                ("Prix", 0.76, "right"),
                ("Total", amt_right, "right"),
            ],
            "qty_name": [("QTE", 0.0, "left"), ("ARTICLE", 0.12, "left"), ("PRIX", amt_right, "right")],
        }
        b.add(*[Cell([_L(t)], x, a) for t, x, a in hdr[layout]], style="small")
    for a in arts:
        name_seg = _L(C.to_title(a.name) if titled_items else a.name, "item_name")
        if layout == "simple" and not a.discount and (a.qty != 1 or a.by_weight):
            # "3 X GALETTE COMPLETE   35,67": quantity folded in front of the name
            q = [_L(qty_txt(a), "item_quantity"), _L("kg" if a.by_weight else rng.choice(("X", "x")))]
            line = b.add(
                Cell([*q, name_seg], 0.0),
                Cell(money(a.total, "item_total_price"), amt_right, "right"),
                *tail(a),
            )
            typo.fit_cell(line, 0)
            item = truth(a, name_seg, "quantity")
        elif a.discount or layout == "simple" or (layout == "qty_lines" and a.qty == 1 and not a.by_weight):
            line = b.add(
                Cell([name_seg], 0.0), Cell(money(a.total, "item_total_price"), amt_right, "right"), *tail(a)
            )
            typo.fit_cell(line, 0)
            item = truth(a, name_seg)
        elif layout == "qty_lines":
            line = b.add(Cell([name_seg], 0.0))
            typo.fit_cell(line, 0)
            q = [_L(qty_txt(a), "item_quantity")]
            if a.by_weight:
                q.append(_L("kg"))
            unit = [_L(rng.choice(("x", "X", "*"))), _L(b.amt(a.unit), "item_unit_price")]
            if a.by_weight:
                unit.append(_L(rng.choice(("€/kg", "EUR/kg", "/kg"))))
            elif euro_items:
                unit.append(_L("€"))
            b.add(
                Cell(q + unit, 0.06), Cell(money(a.total, "item_total_price"), amt_right, "right"), *tail(a)
            )
            item = truth(a, name_seg, "quantity", "unit_price")
        elif layout == "columns":
            line = b.add(
                Cell([_L(qty_txt(a), "item_quantity")], 0.0),
                Cell([name_seg], 0.12),
                Cell([_L(b.amt(a.unit), "item_unit_price")], 0.74, "right"),
                Cell(money(a.total, "item_total_price"), amt_right, "right"),
                *tail(a),
            )
            typo.fit_cell(line, 1)
            item = truth(a, name_seg, "quantity", "unit_price")
        elif layout == "name_cols":
            line = b.add(
                Cell([name_seg], 0.0),
                Cell([_L(qty_txt(a), "item_quantity")], 0.55, "right"),
                Cell([_L(b.amt(a.unit), "item_unit_price")], 0.76, "right"),
                Cell(money(a.total, "item_total_price"), amt_right, "right"),
                *tail(a),
            )
            typo.fit_cell(line, 0)
            item = truth(a, name_seg, "quantity", "unit_price")
        else:  # qty_name: quantity, name, line total
            line = b.add(
                Cell([_L(qty_txt(a), "item_quantity")], 0.0),
                Cell([name_seg], 0.12),
                Cell(money(a.total, "item_total_price"), amt_right, "right"),
                *tail(a),
            )
            typo.fit_cell(line, 1)
            item = truth(a, name_seg, "quantity")
        b.items.append(item)

    total = sum((a.total for a in arts), D(0))
    breakdown = _vat_breakdown(arts)
    n_units = sum((int(a.qty) if not a.by_weight else 1) for a in arts if not a.discount)

    # ---------------------------------------------------------------- totals
    b.rule()
    if rng.random() < 0.4:
        b.add(
            Cell(
                [_L(rng.choice(("NB ARTICLES", "Nombre d'articles", "NBRE ARTICLES")) + f" : {n_units}")], 0.0
            ),
            style="small",
        )
    gross = sum((a.total for a in arts if not a.discount), D(0))
    if rng.random() < 0.35 or gross != total:
        if rng.random() < 0.7:
            b.add(
                Cell([_L(rng.choice(("SOUS-TOTAL", "SOUS TOTAL", "Sous-total", "S/TOTAL")))], 0.0),
                Cell([_L(b.amt(gross))], amt_right, "right"),
            )
    if rng.random() < 0.3:
        b.add(
            Cell([_L(rng.choice(("TOTAL HT", "Total HT", "MONTANT HT")))], 0.0),
            Cell([_L(b.amt(sum((x[1] for x in breakdown), D(0))))], amt_right, "right"),
        )
    total_kw = rng.choice(C.TOTAL_LABELS)
    kw_segs = [_L(w) for w in total_kw.split(" ")]
    has_cur = False
    for s in kw_segs:
        if s.text.strip("()").upper() == "EUR":
            s.label = "currency"
            has_cur = True
            b.field_text["currency"] = s.text
    amount_segs = [_L(b.amt(total), "total")]
    if not has_cur:
        cur = rng.choice(("€", "€", "EUR")) if b.amount_style != "dot" else "EUR"
        amount_segs.append(_L(cur, "currency"))
        b.field_text.setdefault("currency", cur)
    b.put("total", amount_segs[0].text, C.contract_amount(total))
    b.fields["currency"] = "EUR"
    b.add(
        Cell(kw_segs, 0.0),
        Cell(amount_segs, 1.0, "right"),
        style=rng.choice(("big", "bold", "normal", "big")),
        space_before=rng.choice((0.0, 0.2)),
    )

    # ---------------------------------------------------------------- payment
    method = C.weighted_choice(rng, C.PAYMENT_WEIGHTS[kind])
    opts = C.PAYMENTS[method]
    kw = rng.choices([o[0] for o in opts], weights=[o[1] for o in opts])[0]
    b.put("payment_method", kw, method)

    def payment_block() -> None:
        paid = total
        if method == "cash":
            step = D(rng.choice((1, 5, 10, 20)))
            paid = ((total / step).to_integral_value(rounding="ROUND_CEILING")) * step
            if paid == total and rng.random() < 0.5:
                paid += step
        b.add(Cell([_L(kw, "payment_method")], 0.0), Cell([_L(b.amt(paid))], amt_right, "right"))
        if method == "cash" and paid != total:
            b.add(
                Cell([_L(rng.choice(("RENDU", "RENDU MONNAIE", "Monnaie rendue", "A RENDRE")))], 0.0),
                Cell([_L(b.amt(paid - total))], amt_right, "right"),
            )

    def card_slip() -> None:
        b.rule()
        b.add(Cell([_L(rng.choice(("VISA", "MASTERCARD", "CB", "VISA DEBIT")))], 0.5, "center"))
        b.add(Cell([_L(f"A{rng.randint(10**12, 10**13 - 1)}")], 0.5, "center"), style="small")
        b.add(
            Cell(
                [
                    _L(
                        f"LE {C.fmt_date(year, month, day, 'dmy_slash_short')} A "
                        f"{C.fmt_time(hour, minute, second, 'hms_colon')}"
                    )
                ],
                0.0,
            ),
            style="small",
        )
        masked = (
            rng.choice(("************", "XXXXXXXXXXXX", "**** **** **** ")) + f"{rng.randint(0, 9999):04d}"
        )
        b.add(Cell([_L(masked)], 0.0))
        b.add(
            Cell([_L(rng.choice(("MONTANT =", "MONTANT:", "Montant")))], 0.0),
            Cell([_L(f"{C.fmt_amount(total, 'fr_compact')} EUR")], 1.0, "right"),
            style="small",
        )
        b.add(
            Cell(
                [_L(rng.choice(("DEBIT", "TRANSACTION ACCEPTEE", "PAIEMENT ACCEPTE", "SANS CONTACT")))],
                0.5,
                "center",
            ),
            style="small",
        )
        b.add(
            Cell([_L(rng.choice(("TICKET CLIENT", "A CONSERVER", "Ticket client")))], 0.5, "center"),
            style="small",
        )

    # ---------------------------------------------------------------- VAT table
    def vat_table() -> None:
        style = rng.choices(("grid", "coded", "inline", "dont"), weights=(3, 2, 2, 1))[0]
        if rng.random() < 0.5:
            b.rule()
        printed_any_base = style in ("grid", "coded")
        if style == "grid":
            b.add(
                Cell([_L(rng.choice(("TVA", "Taux", "TAUX")))], 0.0),
                Cell([_L(rng.choice(("HT", "Base HT", "H.T.")))], 0.45, "right"),
                Cell([_L(rng.choice(("TVA", "Mt TVA", "T.V.A.")))], 0.72, "right"),
                Cell([_L("TTC")], 1.0, "right"),
                style="small",
            )
        elif style == "coded":
            b.add(
                Cell([_L("Code")], 0.0),
                Cell([_L("Taux")], 0.32, "right"),
                Cell([_L(rng.choice(("Base HT", "HT")))], 0.64, "right"),
                Cell([_L(rng.choice(("Montant TVA", "TVA")))], 1.0, "right"),
                style="small",
            )
        for rate, base, amount, ttc in breakdown:
            rate_txt = C.fmt_rate(rate, rng)
            entry = {"rate": C.contract_rate(rate), "amount": C.contract_amount(amount)}
            if style == "grid":
                b.add(
                    Cell([_L(rate_txt, "vat_rate")], 0.0),
                    Cell([_L(b.amt(base), "vat_base")], 0.45, "right"),
                    Cell([_L(b.amt(amount), "vat_amount")], 0.72, "right"),
                    Cell([_L(b.amt(ttc))], 1.0, "right"),
                )
            elif style == "coded":
                b.add(
                    Cell([_L(code_of[rate])], 0.0),
                    Cell([_L(rate_txt, "vat_rate")], 0.32, "right"),
                    Cell([_L(b.amt(base), "vat_base")], 0.64, "right"),
                    Cell([_L(b.amt(amount), "vat_amount")], 1.0, "right"),
                )
            elif style == "inline":
                b.add(
                    Cell([_L(rng.choice(("TVA", "T.V.A."))), _L(rate_txt, "vat_rate")], 0.0),
                    Cell([_L(b.amt(amount), "vat_amount")], amt_right, "right"),
                )
            else:
                segs = [_L(rng.choice(("dont TVA", "Dont TVA", "DONT TVA"))), _L(rate_txt, "vat_rate")]
                if rng.random() < 0.5:
                    segs.append(_L(rng.choice((":", "="))))
                b.add(Cell(segs, 0.0), Cell([_L(b.amt(amount), "vat_amount")], amt_right, "right"))
            if printed_any_base:
                entry = {"rate": entry["rate"], "base": C.contract_amount(base), "amount": entry["amount"]}
            b.vat_lines.append(entry)
        vat_total = sum((x[2] for x in breakdown), D(0))
        if rng.random() < (0.65 if printed_any_base else 0.35):
            kwt = rng.choice(("TOTAL TVA", "Total TVA", "MONTANT TVA", "TVA TOTALE", "Dont TVA"))
            b.add(
                Cell([_L(kwt)], 0.0),
                Cell([_L(b.amt(vat_total), "vat_total")], 1.0 if style != "inline" else amt_right, "right"),
            )
            b.put("vat_total", b.amt(vat_total), C.contract_amount(vat_total))

    vat_first = rng.random() < 0.5
    if vat_first:
        vat_table()
        b.rule()
        payment_block()
    else:
        payment_block()
        vat_table()
    if method == "card" and rng.random() < 0.4:
        card_slip()

    # ---------------------------------------------------------------- footer
    b.rule()
    if not date_on_top:
        date_line()
    if rng.random() < 0.2 and kind == "supermarket":
        saved = q2(D(rng.randint(50, 900)) / 100)
        b.add(Cell([_L(f"Vous avez économisé {b.amt(saved)} €")], 0.5, "center"), style="small")
    if rng.random() < 0.15:
        until = C.fmt_date(year + (month == 12), month % 12 + 1, min(day, 28), "dmy_slash")
        b.add(Cell([_L(f"Bon valable jusqu'au {until}")], 0.5, "center"), style="small")
    for foot in rng.sample(C.FOOTERS, rng.randint(1, 2)):
        b.add(Cell([_L(foot)], 0.5, "center"))
    if rng.random() < 0.3:
        b.add(
            Cell([_L(f"TICKET N° {ticket_no}")], 0.0),
            Cell([_L(f"CAISSE {till}")], 1.0, "right"),
            style="small",
        )

    assert total == sum((D(i["total_price"]) for i in b.items), D(0))
    return b


def generate_receipt(
    seed: int, degrade: bool = True, *, kind: str | None = None, width: int | None = None
) -> SynthReceipt:
    """One synthetic receipt, a pure function of `seed` (and `degrade`, which only changes the image).

    The content and the clean rendering come from `random.Random(seed)`; photo degradations draw from
    their own streams, so `degrade=False` and `degrade=True` show the same receipt.
    """
    rng = random.Random(seed)
    kind = kind or rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()))[0]
    if kind not in C.SHOP_KINDS:
        raise ValueError(f"unknown shop kind {kind!r}; one of {KINDS}")
    typo = Typography(rng, width)
    b = _build(rng, typo, kind)
    image, words = render(b.lines, typo)
    if degrade:
        image, words = degrade_image(image, words, seed)
    meta = {"kind": kind, "font": typo.regular, "font_size": typo.size, "degraded": degrade}
    return SynthReceipt(
        seed=seed,
        image=image,
        words=words,
        fields=b.fields,
        items=b.items,
        vat_lines=b.vat_lines,
        field_text=b.field_text,
        meta=meta,
    )
