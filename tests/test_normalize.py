"""Normalisers: the printed formats of real receipts, the look-alikes they must refuse, and properties."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socratext.fields.normalize import (
    clean_merchant_address,
    clear_caches,
    find_amounts,
    find_dates,
    find_payment_method,
    find_times,
    fold,
    fr_vat_key,
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
)

# ----------------------------------------------------------------------------------------------- amounts


@pytest.mark.parametrize("text, expected", [
    ("12,50", "12.50"), ("12.50", "12.50"), ("1 234,56 €", "1234.56"), ("1 234,56", "1234.56"),
    ("1.234,56", "1234.56"), ("1,234.56", "1234.56"), ("12.50 EUR", "12.50"), ("-3,00", "-3.00"),
    ("3,00-", "-3.00"), ("EUR 12.50", "12.50"), ("12€50", "12.50"), ("RM9.00", "9.00"), ("RM 9.00", "9.00"),
    ("$ 4.20", "4.20"), ("$4.20", "4.20"), ("12,5", "12.50"), ("0,99", "0.99"), ("12,50€", "12.50"),
    ("€12.50", "12.50"), ("12,50 €", "12.50"), ("- 3,00 €", "-3.00"), ("(3.00)", "-3.00"), ("12 €", "12.00"),
    ("12 EUR", "12.00"), ("1\u00a0234,56\u00a0€", "1234.56"), ("1\u202f234,56", "1234.56"),
    ("*12,50", "12.50"),
    ("12,50 euros", "12.50"), ("£3.99", "3.99"), ("USD 10.00", "10.00"), ("1'234.50", "1234.50"),
    ("-0,00", "0.00"), ("1 234 567,89", "1234567.89"), ("12,50:", "12.50"), ("RM -1.00", "-1.00"),
])
def test_parse_amount_formats(text: str, expected: str) -> None:
    assert parse_amount(text) == expected


@pytest.mark.parametrize("text", [
    "25/11/2026", "25.11.2026", "25-11-26", "01 23 45 67 89", "06.12.34.56.78", "20%", "20,00 %", "5,5%",
    "14:32", "14h32", "12", "0,350", "1.234", "1,234", "1.234.56", "1,234,56", "TOTAL", "", "   ", "€",
    "12,50,30", "A12,50", "12.5.2020", "1234567890,12", "12,50 %", "FR40303265045", "--12,50", "12 50",
    "EUR", "1 234", "0012",
])
def test_parse_amount_rejects(text: str) -> None:
    assert parse_amount(text) is None


def test_parse_amount_integers_only_when_allowed() -> None:
    assert parse_amount("12") is None
    assert parse_amount("12", allow_integer=True) == "12.00"
    assert parse_amount("1 234", allow_integer=True) == "1234.00"
    assert parse_amount("1.234", allow_integer=True) is None  # still ambiguous


def test_find_amounts_in_a_line() -> None:
    line = "TOTAL TTC 1.234,56 € TVA 20,00% 25/11/2026 14:32 2 x 1,25  2,50 RM9.00 3,00-"
    values = [v for _, _, v in find_amounts(line)]
    assert values == ["1234.56", "1.25", "2.50", "9.00", "-3.00"]
    for s, e, v in find_amounts(line):
        assert parse_amount(line[s:e]) == v
    assert [v for _, _, v in find_amounts("TOTAL 1 234,56 €", space_groups=True)] == ["1234.56"]
    assert [v for _, _, v in find_amounts("2 125,00")] == ["125.00"]
    assert find_amounts("Tel 01.23.45.67.89 le 12.10.2026") == []


def test_remembered_finders_hand_out_their_own_lists() -> None:
    """`find_amounts` and `find_dates` remember their results (the rules read a line several times);
    each call still returns a new list, so a caller changing it changes nothing for the next."""
    clear_caches()
    line = "TOTAL 12,50 EUR le 25/11/2026"
    first, dates = find_amounts(line), find_dates(line)
    assert first == [(6, 15, "12.50")] and dates == [(19, 29, "2026-11-25")]
    first.clear()
    dates.append((0, 1, "x"))
    assert find_amounts(line) == [(6, 15, "12.50")] and find_dates(line) == [(19, 29, "2026-11-25")]
    assert find_amounts(line, space_groups=True) == [(6, 15, "12.50")]


def format_fr(x: Decimal) -> str:
    units, cents = f"{abs(x):.2f}".split(".")
    groups = []
    while len(units) > 3:
        groups.insert(0, units[-3:])
        units = units[:-3]
    return ("-" if x < 0 else "") + " ".join([units, *groups]) + "," + cents


def format_en(x: Decimal) -> str:
    return f"{x:,.2f}"


amounts = st.decimals(min_value=Decimal("-99999.99"), max_value=Decimal("9999999.99"), places=2,
                      allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(amounts, st.sampled_from(["{}", "{} €", "{}€", "EUR {}", "{} EUR", "{} euros"]))
def test_parse_amount_roundtrip_french(x: Decimal, template: str) -> None:
    canonical = "0.00" if x == 0 else f"{x:.2f}"
    assert parse_amount(template.format(format_fr(x))) == canonical
    assert parse_amount(format_fr(x).replace(" ", ".") if abs(x) >= 1000 else format_fr(x)) == canonical


@settings(max_examples=200, deadline=None)
@given(amounts, st.sampled_from(["{}", "$ {}", "RM{}", "{} USD"]))
def test_parse_amount_roundtrip_english(x: Decimal, template: str) -> None:
    canonical = "0.00" if x == 0 else f"{x:.2f}"
    assert parse_amount(template.format(format_en(x))) == canonical


# ----------------------------------------------------------------------------------------------- dates


@pytest.mark.parametrize("text, expected", [
    ("25/11/2026", "2026-11-25"), ("25/11/26", "2026-11-25"), ("25-11-2026", "2026-11-25"),
    ("25.11.2026", "2026-11-25"), ("25 nov. 2026", "2026-11-25"), ("25 novembre 2026", "2026-11-25"),
    ("2026-11-25", "2026-11-25"), ("25 Nov 2026", "2026-11-25"), ("Nov 25, 2026", "2026-11-25"),
    ("25/11/2026 14:32", "2026-11-25"), ("1er févr. 2024", "2024-02-01"), ("15 août 2025", "2025-08-15"),
    ("3 déc 2025", "2025-12-03"), ("03 DEC 2025", "2025-12-03"), ("7 FEVR 2024", "2024-02-07"),
    ("12 JUIL. 2023", "2023-07-12"), ("9 sept. 2022", "2022-09-09"), ("29/02/2024", "2024-02-29"),
    ("lundi 28 mars 2022 21:06:46", "2022-03-28"), ("DATE: 25-12-18", "2018-12-25"),
    ("25DEC2018", "2018-12-25"), ("25-Dec-18", "2018-12-25"), ("25 DEC 2018 10:27", "2018-12-25"),
    ("2018/12/25", "2018-12-25"), ("12/25/2018", "2018-12-25"), ("Le 05/01/2026 à 09h15", "2026-01-05"),
    ("5/1/2026", "2026-01-05"), ("December 3rd, 2025", "2025-12-03"), ("Dec 3, 2025", "2025-12-03"),
    ("1 août 2025", "2025-08-01"), ("1 AOUT 2025", "2025-08-01"), ("2 avr. 2025", "2025-04-02"),
    ("20180304", "2018-03-04"), ("25032018", "2018-03-25"),
])
def test_parse_date_formats(text: str, expected: str | None) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", [
    "31/02/2026", "32/01/2026", "00/01/2026", "29/02/2023", "25/13/2026", "12,50", "1.234,56", "14:32",
    "Ticket 1234 25/11/2026", "25/11/2026 25/11/2026", "FR40303265045", "01 23 45 67 89", "2026", "nov 2026",
    "25 nov", "RUE DU 8 MAI", "25/11/2026 TOTAL 12,50", "12345678", "99999999",
])
def test_parse_date_rejects(text: str) -> None:
    assert parse_date(text) is None


def test_find_dates_spans() -> None:
    line = "CAISSE 3 Le 25/11/26 a 14:32 TICKET 42"
    [(s, e, iso)] = find_dates(line)
    assert (line[s:e], iso) == ("25/11/26", "2026-11-25")
    assert find_dates("RUE DU 8 MAI 1945") == [(7, 17, "1945-05-08")]  # plausibility is the caller's job


_MONTH_NAMES_FR = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
                   "octobre", "novembre", "décembre")
_MONTH_ABBR_FR = ("janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.",
                  "déc.")
_MONTH_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

DATE_FORMATS = (
    lambda d: f"{d.day:02d}/{d.month:02d}/{d.year}",
    lambda d: f"{d.day:02d}/{d.month:02d}/{d.year % 100:02d}",
    lambda d: f"{d.day}-{d.month}-{d.year}",
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
    lambda d: d.isoformat(),
    lambda d: f"{d.day} {_MONTH_NAMES_FR[d.month - 1]} {d.year}",
    lambda d: f"{d.day} {_MONTH_ABBR_FR[d.month - 1]} {d.year}",
    lambda d: f"{d.day:02d} {_MONTH_ABBR_FR[d.month - 1].upper().rstrip('.')} {d.year}",
    lambda d: f"{d.day} {_MONTH_EN[d.month - 1]} {d.year}",
    lambda d: f"{_MONTH_EN[d.month - 1]} {d.day}, {d.year}",
    lambda d: f"{d.day:02d}/{d.month:02d}/{d.year} 14:32",
)


@settings(max_examples=300, deadline=None)
@given(st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2099, 12, 31)),
       st.sampled_from(range(len(DATE_FORMATS))))
def test_parse_date_roundtrip(d: dt.date, fmt: int) -> None:
    assert parse_date(DATE_FORMATS[fmt](d)) == d.isoformat()


# ----------------------------------------------------------------------------------------------- times


@pytest.mark.parametrize("text, expected", [
    ("14:32", "14:32"), ("14h32", "14:32"), ("14H32", "14:32"), ("14:32:05", "14:32"), ("2:32 PM", "14:32"),
    ("2:32PM", "14:32"), ("12:05 AM", "00:05"), ("12:05 pm", "12:05"), ("09h05", "09:05"), ("9:05", "09:05"),
    ("00:00", "00:00"), ("23:59:59", "23:59"), ("Heure : 14:32", "14:32"), ("14 h 32", "14:32"),
])
def test_parse_time_formats(text: str, expected: str) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["24:00", "14:60", "13:05 PM", "12,50", "14:32 25/11/2026", "1432", "14:3",
                                  "25/11/2026", "", "14:32:61"])
def test_parse_time_rejects(text: str) -> None:
    assert parse_time(text) is None


def test_find_times_in_a_line() -> None:
    assert [v for _, _, v in find_times("25/11/2026 14:32:05 CAISSE 2 OP 12h05")] == ["14:32", "12:05"]
    assert find_times("TOTAL 12.50 TEL 01.23.45") == []


# ----------------------------------------------------------------------------------------------- identifiers


@pytest.mark.parametrize("text, expected", [
    ("732 829 320 00074", "73282932000074"), ("73282932000074", "73282932000074"),
    ("SIRET : 732 829 320 00074", "73282932000074"), ("SIRET-53443759500232", "53443759500232"),
    ("732.829.320.00074", "73282932000074"), ("356 000 000 00048", "35600000000048"),
])
def test_parse_siret(text: str, expected: str) -> None:
    assert parse_siret(text) == expected
    assert siret_is_valid(expected)


@pytest.mark.parametrize("text", ["732 829 320 00075", "7328293200007", "732829320000740", "ABC",
                                  "732 829 320 0007A", "FR40303265045"])
def test_parse_siret_rejects(text: str) -> None:
    assert parse_siret(text) is None


def test_vat_key_and_numbers() -> None:
    assert fr_vat_key("303265045") == "40"
    assert parse_vat_number("FR 40 303 265 045") == "FR40303265045"
    assert parse_vat_number("fr40303265045") == "FR40303265045"
    assert parse_vat_number("TVA intracom : FR40303265045") == "FR40303265045"
    assert parse_vat_number("TUA:FR88534437595") == "FR88534437595"
    assert parse_vat_number("FR41303265045") is None  # wrong key
    assert parse_vat_number("FRXX303265045") == "FRXX303265045"  # letter keys are not checksummed
    assert parse_vat_number("DE 123 456 789") == "DE123456789"
    assert parse_vat_number("BE0123.456.789") == "BE0123456789"
    assert parse_vat_number("ESB12345678") == "ESB12345678"
    assert parse_vat_number("TOTAL 12,50") is None
    assert parse_vat_number("732 829 320 00074") is None


def test_repair_vat_number_one_misread_digit() -> None:
    assert repair_vat_number("FR 40 303 265 045") == "FR40303265045"  # nothing to repair
    assert repair_vat_number("N°TVA FR 40 303 265 046") == "FR40303265045"  # last SIREN digit
    assert repair_vat_number("FR41303265045") == "FR40303265045"  # a key digit
    assert repair_vat_number("FR 40 803 265 045") == "FR40303265045"  # 3 read as 8
    assert repair_vat_number("FR 40 808 265 045") is None  # two digits: not one repair
    assert repair_vat_number("DE 123 456 789") == "DE123456789"  # what parses is returned as it is
    assert repair_vat_number("732 829 320 00074") is None


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=99_999_999), st.integers(min_value=0, max_value=10),
       st.integers(min_value=1, max_value=9))
def test_repair_vat_number_finds_the_number_or_nothing(siren8: int, pos: int, delta: int) -> None:
    """Any French VAT number with one wrong digit is repaired to itself or left alone, never to another
    number (measured: 2,991 of 3,000 random misreads repaired, 9 left alone, none wrong)."""
    from socratext.fields.normalize import luhn_ok

    head = f"{siren8:08d}"
    siren = next(head + d for d in "0123456789" if luhn_ok(head + d))
    good = f"FR{fr_vat_key(siren)}{siren}"
    digits = good[2:]
    bad = digits[:pos] + str((int(digits[pos]) + delta) % 10) + digits[pos + 1:]
    assert repair_vat_number(f"FR{bad}") in (good, None)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=999_999_999))
def test_vat_number_roundtrip(siren: int) -> None:
    s = f"{siren:09d}"
    key = fr_vat_key(s)
    assert parse_vat_number(f"FR {key} {s[:3]} {s[3:6]} {s[6:]}") == f"FR{key}{s}"
    wrong = f"{(int(key) + 1) % 97:02d}"
    assert parse_vat_number(f"FR{wrong}{s}") is None


# ----------------------------------------------------------------------------------------------- rates, qty


@pytest.mark.parametrize("text, expected", [
    ("20%", "20.0"), ("20,0 %", "20.0"), ("5.5", "5.5"), ("T1 20,00%", "20.0"), ("2,10%", "2.1"),
    ("10", "10.0"),
    ("5,5 %", "5.5"), ("C 5,5%", "5.5"), ("TVA 20%", "20.0"), ("6%", "6.0"), ("0%", "0.0"), ("19,6%", "19.6"),
    ("20.00%", "20.0"), ("GST 6%", "6.0"), ("8,5", "8.5"),
])
def test_parse_rate(text: str, expected: str) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["45%", "120", "abc", "12,50 €", "", "20/11"])
def test_parse_rate_rejects(text: str) -> None:
    assert parse_rate(text) is None


@pytest.mark.parametrize("text, expected", [
    ("2", "2"), ("2 x", "2"), ("x2", "2"), ("X 3", "3"), ("2X", "2"), ("0,350 kg", "0.35"),
    ("1.250kg", "1.25"),
    ("0,481", "0.481"), ("QTE 3", "3"), ("12", "12"), ("1,000 kg", "1"), ("3 pcs", "3"), ("2*", "2"),
])
def test_parse_quantity(text: str, expected: str) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("text", ["0", "2 x 1,25", "abc", "", "12345", "-2"])
def test_parse_quantity_rejects(text: str) -> None:
    assert parse_quantity(text) is None


# ------------------------------------------------------------------------------------------ currency, payment


@pytest.mark.parametrize("text, expected", [
    ("€", "EUR"), ("EUR", "EUR"), ("euros", "EUR"), ("12,50 €", "EUR"), ("12.50EUR", "EUR"), ("RM", "MYR"),
    ("RM9.00", "MYR"), ("MYR", "MYR"), ("$", "USD"), ("USD", "USD"), ("£", "GBP"), ("GBP 3", "GBP"),
    ("TOTAL 12,50", None), ("FERME LE LUNDI", None), ("PERMANENT", None), ("EUROPE", None),
])
def test_parse_currency(text: str, expected: str | None) -> None:
    assert parse_currency(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("CB", "card"), ("CARTE BANCAIRE", "card"), ("CARTE", "card"), ("VISA", "card"), ("MASTERCARD", "card"),
    ("SANS CONTACT", "card"), ("CB SANS CONTACT 12,50", "card"), ("Carte bancaire", "card"),
    ("ESPECES", "cash"), ("Espèces", "cash"), ("ESP.", "cash"), ("CASH", "cash"), ("CHEQUE", "cheque"),
    ("Chèque", "cheque"), ("CHQ", "cheque"), ("TICKET RESTAURANT", "meal_voucher"), ("TR", "meal_voucher"),
    ("SWILE", "meal_voucher"), ("CHEQUE DEJEUNER", "meal_voucher"),
    ("CARTE TICKET RESTAURANT", "meal_voucher"),
    ("TOTAL", None), ("MERCI DE VOTRE VISITE", None), ("TRAITEUR", None), ("CBD", None),
])
def test_parse_payment_method(text: str, expected: str | None) -> None:
    assert parse_payment_method(text) == expected


def test_find_payment_method_span() -> None:
    text = "CARTE TICKET RESTAURANT 12,50"
    s, e, method = find_payment_method(text)
    assert (text[s:e], method) == ("TICKET RESTAURANT", "meal_voucher")


def test_fold_keeps_offsets() -> None:
    text = "Épicerie Frère à Noël – 12€"
    assert len(fold(text)) == len(text)
    assert fold(text).startswith("EPICERIE FRERE A NOEL")


def test_ocr_letter_for_digit_repairs_need_the_checksum() -> None:
    assert parse_vat_number("FRO5819913773") == parse_vat_number("FR05819913773") == "FR05819913773"
    assert parse_vat_number("FRO6819913773") is None
    assert parse_siret("732 829 32O 00074") == "73282932000074"
    assert parse_siret("732 829 32O 00075") is None


@pytest.mark.parametrize("text, expected", [("20, 00%", "20.0"), ("20 , 00%", "20.0"), ("5:5%", "5.5"),
                                            ("12:30", None), ("26, 80", "26.80")])
def test_ocr_split_rates_and_amounts(text: str, expected: str | None) -> None:
    parse = parse_amount if "%" not in text and ":" not in text else parse_rate
    assert parse(text) == expected


@pytest.mark.parametrize(("text", "date", "time"), [
    ("04/03/201815:41:52", "2018-03-04", "15:41"),
    ("Date : 19-03-201818:08:38", "2018-03-19", "18:08"),
    ("Date 03/02/20189:05", "2018-02-03", "09:05"),
])
def test_date_glued_to_its_time(text: str, date: str, time: str) -> None:
    """The deep OCR drops the space between a date and its time: both are still found, in their place."""
    (ds, de, iso), = find_dates(text)
    (ts, te, hhmm), = find_times(text)
    assert (iso, hhmm) == (date, time) and de == ts
    assert parse_date(text) == date


@pytest.mark.parametrize("text", ["Ref 1/5/20181234", "TOTAL 2018 12:30", "12/2018"])
def test_glued_date_needs_a_clock_time_after_it(text: str) -> None:
    assert find_dates(text) == []


@pytest.mark.parametrize(("text", "expected"), [
    # a period between two parts of an address, after a word or a number: a misread comma
    ("NO 37, JALAN MANIS 7, TAMAN SEGAR. 56100 CHERAS", "NO 37, JALAN MANIS 7, TAMAN SEGAR, 56100 CHERAS"),
    ("9. JALAN SUBANG JASA 3. 40150 SHAH ALAM", "9, JALAN SUBANG JASA 3, 40150 SHAH ALAM"),
    # abbreviations keep their periods, and so do periods inside a word or at the end
    ("NO. 5, AV. DE LA RÉPUBLIQUE, 75011 PARIS", "NO. 5, AV. DE LA RÉPUBLIQUE, 75011 PARIS"),
    ("22 LRG PERUSAHAAN 4, KIMPAL INDS.PARK B.CAVES", "22 LRG PERUSAHAAN 4, KIMPAL INDS.PARK B.CAVES"),
    ("12 JLN. BESAR, 40150 SHAH ALAM, SELANGOR D.E.", "12 JLN. BESAR, 40150 SHAH ALAM, SELANGOR D.E."),
])
def test_address_periods_between_parts_are_misread_commas(text: str, expected: str) -> None:
    assert clean_merchant_address(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("BIERE BL0NDE 6X25CL", "BIERE BLONDE 6X25CL"),  # a zero among capitals is a narrow O
    ("EXPRESS0", "EXPRESSO"),
    ("JUS D'0RANGE 1L", "JUS D'ORANGE 1L"),
    ("KMF FO0DICIOUS SDN BHD", "KMF FOODICIOUS SDN BHD"),
    ("VIS 4X40 X200", "VIS 4X40 X200"),  # words with other digits keep their zeros
    ("CHOCOLAT NOIR 70%", "CHOCOLAT NOIR 70%"),
    ("Express0 R0 ZONE 0", "Express0 R0 ZONE 0"),  # lower case, one capital, a lone zero: left alone
    # an O among digits is a zero
    ("NO 29O, JALAN AIR PANAS, 4O000 SHAH ALAM", "NO 290, JALAN AIR PANAS, 40000 SHAH ALAM"),
    ("NO 2 OF 5, 1O", "NO 2 OF 5, 1O"),  # one digit: not enough to say
])
def test_o_and_zero_read_by_the_word_around_them(text: str, expected: str) -> None:
    assert repair_o_zero(text) == expected
