"""Field assembly on hand-built labelled pages: values, provenance, items, VAT lines, confidence, review."""

from __future__ import annotations

import datetime as dt

import pytest

from socratext.document import OcrPage, Word, WordLabel
from socratext.fields import checks
from socratext.fields.assemble import assemble_receipt

TODAY = dt.date(2026, 11, 25)


def build(rows: list[list[tuple[str, str] | tuple[str, str, float]]], conf: float = 0.95,
          ) -> tuple[OcrPage, list[WordLabel]]:
    """A page from rows of (text, label[, probability]) tokens; boxes follow a 10 px per character grid."""
    words: list[Word] = []
    labels: list[WordLabel] = []
    for line_id, row in enumerate(rows):
        x, y = 10, 10 + 30 * line_id
        for tok in row:
            text, label = tok[0], tok[1]
            prob = tok[2] if len(tok) > 2 else 0.95
            words.append(Word(text, (x, y, x + 10 * len(text), y + 20), conf, line_id))
            labels.append(WordLabel(label, prob))
            x += 10 * (len(text) + 1)
    return OcrPage(words, 400, 40 + 30 * len(rows)), labels


def assemble(page: OcrPage, labels: list[WordLabel], **kw):  # type: ignore[no-untyped-def]
    return assemble_receipt(page, labels, receipt_id="r1", source={"path": "r1.jpg"},
                            model={"name": "test", "version": "0"}, today=TODAY, **kw)


OTHER = "O"

RECEIPT = [
    [("CARREFOUR", "merchant_name"), ("CITY", "merchant_name")],
    [("12", "merchant_address"), ("RUE", "merchant_address"), ("DE", "merchant_address"),
     ("LA", "merchant_address"), ("PAIX", "merchant_address")],
    [("75002", "merchant_address"), ("PARIS", "merchant_address")],
    [("SIRET", OTHER), ("303", "siret"), ("265", "siret"), ("045", "siret"), ("00011", "siret")],
    [("TVA", OTHER), ("FR40303265045", "vat_number")],
    [("Le", OTHER), ("25", "date"), ("nov.", "date"), ("2026", "date"), ("à", OTHER), ("14h32", "time")],
    [("BAGUETTE", "item_name"), ("TRADITION", "item_name")],
    [("2", "item_quantity"), ("x", "item_quantity"), ("1,10", "item_unit_price"),
     ("2,20", "item_total_price")],
    [("JAMBON", "item_name"), ("BLANC", "item_name"), ("4,50", "item_total_price")],
    [("COCA", "item_name"), ("4111111111111111", "item_name"), ("1,80", "item_total_price")],
    [("TOTAL", OTHER), ("TTC", OTHER), ("8,50", "total"), ("€", "currency")],
    [("TVA", OTHER), ("5,5%", "vat_rate"), ("6,15", "vat_base"), ("0,34", "vat_amount")],
    [("TVA", OTHER), ("20,00", "vat_rate"), ("%", "vat_rate"), ("1,68", "vat_base"), ("0,33", "vat_amount")],
    [("TOTAL", OTHER), ("TVA", OTHER), ("0,67", "vat_total")],
    [("CB", "payment_method"), ("SANS", "payment_method"), ("CONTACT", "payment_method"), ("8,50", OTHER)],
]


def test_fields_values_and_provenance() -> None:
    page, labels = build(RECEIPT)
    r = assemble(page, labels)
    v = {k: f.value for k, f in r.fields.items()}
    assert v == {
        "merchant_name": "CARREFOUR CITY", "merchant_address": "12 RUE DE LA PAIX, 75002 PARIS",
        "siret": "30326504500011", "vat_number": "FR40303265045", "date": "2026-11-25", "time": "14:32",
        "total": "8.50", "vat_total": "0.67", "currency": "EUR", "payment_method": "card",
    }
    assert r.fields["date"].text == "25 nov. 2026"
    date_words = [w for w, lab in zip(page.words, labels, strict=True) if lab.label == "date"]
    assert r.fields["date"].boxes == [list(w.box) for w in date_words]
    assert r.fields["total"].boxes == [[110, 310, 150, 330]]
    assert r.fields["merchant_address"].text == "12 RUE DE LA PAIX, 75002 PARIS"
    assert len(r.fields["merchant_address"].boxes) == 7
    out = r.export()
    assert list(out["fields"]) == ["merchant_name", "merchant_address", "siret", "vat_number", "date", "time",
                                   "total", "vat_total", "currency", "payment_method"]
    assert out["receipt_id"] == "r1" and out["model"] == {"name": "test", "version": "0"}


def test_items_across_two_lines_and_pan_masking() -> None:
    page, labels = build(RECEIPT)
    items = [i.export() for i in assemble(page, labels).items]
    for i in items:
        assert 0 < i.pop("confidence") <= 1
    assert items == [
        {"name": "BAGUETTE TRADITION", "quantity": "2", "unit_price": "1.10", "total_price": "2.20"},
        {"name": "JAMBON BLANC", "total_price": "4.50"},
        {"name": "COCA ************1111", "total_price": "1.80"},
    ]


def test_vat_lines() -> None:
    page, labels = build(RECEIPT)
    assert [v.export() for v in assemble(page, labels).vat_lines] == [
        {"rate": "5.5", "base": "6.15", "amount": "0.34"}, {"rate": "20.0", "base": "1.68", "amount": "0.33"},
    ]


def test_confident_receipt_is_not_for_review() -> None:
    page, labels = build(RECEIPT)
    r = assemble(page, labels)
    assert r.confidence >= 0.75 and not r.needs_review
    assert assemble(page, labels, review_threshold=0.999).needs_review


def test_cross_checks_raise_and_lower_confidence() -> None:
    page, labels = build(RECEIPT)
    good = assemble(page, labels)
    # items sum to the total: the total is more confident than its words alone (0.95 × OCR factor)
    assert good.fields["total"].confidence > 0.95 * (0.6 + 0.4 * 0.95)
    # the VAT lines do not add up to the VAT total any more
    bad_rows = [row[:] for row in RECEIPT]
    bad_rows[13] = [("TOTAL", OTHER), ("TVA", OTHER), ("0,97", "vat_total")]
    bad = assemble(*build(bad_rows))
    assert bad.fields["vat_total"].confidence < good.fields["vat_total"].confidence
    # the VAT number does not belong to the SIRET's company
    other = [row[:] for row in RECEIPT]
    other[3] = [("SIRET", OTHER), ("732", "siret"), ("829", "siret"), ("320", "siret"), ("00074", "siret")]
    mixed = assemble(*build(other))
    assert mixed.fields["vat_number"].confidence < good.fields["vat_number"].confidence


def test_future_date_lowers_confidence_and_flags_review() -> None:
    rows = [row[:] for row in RECEIPT]
    rows[5] = [("Le", OTHER), ("25/11/2030", "date")]
    r = assemble(*build(rows))
    assert r.fields["date"].value == "2030-11-25"
    assert r.fields["date"].confidence < 0.6
    assert r.needs_review


def test_missing_key_field_needs_review() -> None:
    rows = [row for i, row in enumerate(RECEIPT) if i != 10]  # no total
    r = assemble(*build(rows))
    assert "total" not in r.fields
    assert r.needs_review and r.confidence < 0.75


def test_low_probability_and_low_ocr_confidence_lower_confidence() -> None:
    page, labels = build(RECEIPT)
    high = assemble(page, labels)
    page_lo, _ = build(RECEIPT, conf=0.3)
    low_ocr = assemble(page_lo, labels)
    assert low_ocr.fields["merchant_name"].confidence < high.fields["merchant_name"].confidence
    unsure = [WordLabel(lab.label, 0.4) for lab in labels]
    assert assemble(page, unsure).confidence < high.confidence


def test_total_prefers_the_largest_near_best_candidate_and_agreement() -> None:
    rows = [
        [("SOUS-TOTAL", OTHER), ("7,00", "total", 0.8)],
        [("TOTAL", OTHER), ("8,50", "total", 0.85)],
        [("CB", "payment_method"), ("8,50", "total", 0.8)],
        [("RENDU", OTHER), ("0,10", "total", 0.3)],
    ]
    r = assemble(*build(rows))
    assert r.fields["total"].value == "8.50"
    assert r.fields["total"].confidence > 0.85 * (0.6 + 0.4 * 0.95)  # two candidates agree


def test_partial_labels_fall_back_to_the_line() -> None:
    rows = [[("Date", OTHER), ("25", "date"), ("nov.", "date"), ("2026", OTHER), ("TOTAL", OTHER),
             ("12,50", OTHER)],
            [("TOTAL", "total"), ("1", "total"), ("234,56", "total")]]
    r = assemble(*build(rows))
    assert r.fields["date"].value == "2026-11-25"
    assert r.fields["total"].value == "1234.56"


def test_unparseable_spans_are_dropped() -> None:
    rows = [[("hello", "date"), ("world", "total"), ("XYZ", "siret"), ("nothing", "currency")]]
    r = assemble(*build(rows))
    assert r.fields == {}
    assert r.needs_review and r.confidence == 0.0


def test_label_count_must_match() -> None:
    page, labels = build(RECEIPT)
    with pytest.raises(ValueError):
        assemble(page, labels[:-1])


def test_currency_from_amount_words_when_not_labelled() -> None:
    rows = [[("TOTAL", OTHER), ("12,50€", "total")]]
    r = assemble(*build(rows))
    assert r.fields["currency"].value == "EUR"
    assert r.fields["currency"].text == "12,50€"


def test_item_name_line_then_price_line_and_name_only_item() -> None:
    rows = [
        [("OFFERT", "item_name")],
        [("TOMATES", "item_name"), ("GRAPPE", "item_name")],
        [("0,350", "item_quantity"), ("kg", "item_quantity"), ("x", OTHER), ("3,99", "item_unit_price"),
         ("1,40", "item_total_price")],
        [("REMISE", "item_name"), ("-0,50", "item_total_price")],
    ]
    items = [i.export() for i in assemble(*build(rows)).items]
    for i in items:
        i.pop("confidence")
    assert items == [
        {"name": "OFFERT"},
        {"name": "TOMATES GRAPPE", "quantity": "0.35", "unit_price": "3.99", "total_price": "1.40"},
        {"name": "REMISE", "total_price": "-0.50"},
    ]


# ----------------------------------------------------------------------------------------------- checks


def test_checks() -> None:
    assert checks.items_match_total(["2.20", "4.50", "1.80"], "8.50") is True
    assert checks.items_match_total(["2.20", "4.50", "3.00"], "8.50") is None  # discounts not printed
    assert checks.items_match_total(["1.00"], "8.50") is False
    assert checks.items_match_total([], "8.50") is None
    assert checks.vat_line_consistent("20.0", "10.00", "2.00") is True
    assert checks.vat_line_consistent("20.0", "12.00", "2.00") is True  # base printed incl. tax
    assert checks.vat_line_consistent("20.0", "10.00", "3.00") is False
    assert checks.vat_line_consistent(None, "10.00", "2.00") is None
    assert checks.vat_amounts_match_total(["0.34", "0.33"], "0.67") is True
    assert checks.vat_amounts_match_total(["0.34", "0.33"], "0.97") is False
    assert checks.vat_bases_match_total(["6.15", "1.68"], ["0.34", "0.33"], "8.50") is True
    assert checks.vat_bases_match_total(["6.15"], ["0.34"], "8.50") is False
    assert checks.siret_ok("30326504500011") is True
    assert checks.siret_ok("30326504500012") is False
    assert checks.vat_matches_siret("FR40303265045", "30326504500011") is True
    assert checks.vat_matches_siret("FR40303265045", "73282932000074") is False
    assert checks.vat_matches_siret("DE123456789", "73282932000074") is None
    assert checks.date_plausible("2026-11-25", TODAY) is True
    assert checks.date_plausible("2026-11-26", TODAY) is True
    assert checks.date_plausible("2026-11-28", TODAY) is False
    assert checks.date_plausible("1999-12-31", TODAY) is False
    assert checks.item_consistent("2", "1.10", "2.20") is True
    assert checks.item_consistent("0.35", "3.99", "1.40") is True
    assert checks.item_consistent("2", "1.10", "3.20") is False


def test_currency_of_a_french_receipt_without_any_sign() -> None:
    rows = [[("TOTAL", OTHER), ("TTC", OTHER), ("12,50", "total")], [("TVA", OTHER), ("20%", OTHER)]]
    r = assemble(*build(rows))
    assert r.fields["currency"].value == "EUR"
    assert r.fields["currency"].confidence < 0.5
    assert "currency" not in assemble(*build([[("TOTAL", OTHER), ("12,50", "total")]])).fields


def test_amount_on_the_payment_line_confirms_the_total() -> None:
    base = [[("TOTAL", OTHER), ("8,50", "total")]]
    alone = assemble(*build(base + [[("CB", "payment_method"), ("9,50", OTHER)]]))
    confirmed = assemble(*build(base + [[("CB", "payment_method"), ("8,50", OTHER)]]))
    assert confirmed.fields["total"].confidence > alone.fields["total"].confidence


@pytest.mark.parametrize(("rows", "expected"), [
    # the contract's separator between rows that print none
    ([["12", "RUE", "DE", "LA", "PAIX"], ["75002", "PARIS"]], "12 RUE DE LA PAIX, 75002 PARIS"),
    # the receipt prints its own commas: its line breaks fall mid-phrase, the rows join with a space
    ([["LOT", "G12,GROUND", "FLOOR,SERI", "PLAZA"], ["NO.8,JALAN", "MAWAR,"], ["53100", "KUALA", "LUMPUR."]],
     "LOT G12,GROUND FLOOR,SERI PLAZA NO.8,JALAN MAWAR, 53100 KUALA LUMPUR."),
    # a comma that only ends a row is not one of the address's own separators
    ([["12", "RUE", "DE", "LA", "PAIX,"], ["75002", "PARIS"]], "12 RUE DE LA PAIX, 75002 PARIS"),
])
def test_address_rows_join_as_the_receipt_prints_them(rows: list[list[str]], expected: str) -> None:
    page, labels = build([[(w, "merchant_address") for w in row] for row in rows])
    r = assemble(page, labels)
    assert r.fields["merchant_address"].value == expected
    assert r.fields["merchant_address"].text == expected
