"""The rules extractor on hand-built French and SROIE-like pages, end to end through field assembly."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socratext.document import OcrPage, Word
from socratext.extractors import Extractor, RulesExtractor
from socratext.extractors.rules import build_rows, label_page
from socratext.fields.assemble import assemble_receipt
from socratext.fields.normalize import parse_amount, parse_date
from socratext.fields.rows import page_rows
from socratext.labels import WORD_LABELS

TODAY = dt.date(2026, 11, 25)
SROIE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sroie"


def page_from_text(text: str, *, slope: float = 0.0, split_columns: bool = False, char_w: int = 12,
                   line_h: int = 24) -> OcrPage:
    """Monospaced receipt text → OCR words with boxes. `slope` tilts the page (dy per px of x);
    `split_columns` gives words after a gap of 3+ spaces their own OCR line, as Tesseract often does."""
    words: list[Word] = []
    line_id = 0
    for r, raw in enumerate(text.strip("\n").split("\n")):
        chunks = re.split(r"(\s{3,})", raw) if split_columns else [raw]
        col = 0
        for chunk in chunks:
            if not chunk:
                continue
            if chunk.isspace():
                col += len(chunk)
                continue
            for m in re.finditer(r"\S+", chunk):
                x0 = 10 + (col + m.start()) * char_w
                x1 = x0 + len(m.group(0)) * char_w
                y0 = int(10 + r * line_h * 1.4 + slope * x0)
                words.append(Word(m.group(0), (x0, y0, x1, y0 + line_h), 0.95, line_id))
            col += len(chunk)
            line_id += 1
    return OcrPage(words, 60 * char_w, int(40 + text.count("\n") * line_h * 1.5))


def extract(page: OcrPage) -> dict:
    labels = RulesExtractor(today=TODAY).label([page])[0]
    assert len(labels) == len(page.words)
    assert all(lab.label in WORD_LABELS and 0 < lab.probability <= 1 for lab in labels)
    r = assemble_receipt(page, labels, receipt_id="t", source={"path": "t"},
                         model={"name": "rules", "version": "1"}, today=TODAY)
    return r.export()


FRENCH = """
          CARREFOUR CITY
            BIENVENUE
    12 RUE DE LA REPUBLIQUE
         69003 LYON
      TEL 04 78 12 34 56
  SIRET 303 265 045 00011
  TVA INTRACOM FR40303265045
Le 25/11/2026 a 14:32   CAISSE 3
QTE DESIGNATION          MONTANT
BAGUETTE TRADITION
  2 x 1,10                  2,20
JAMBON BLANC X4             4,50
TOMATES GRAPPE
  0,350 kg x 3,99 EUR/kg    1,40
SOUS-TOTAL                  8,10
REMISE FIDELITE            -0,50
TOTAL TTC                   7,60 EUR
CB SANS CONTACT             7,60
CARTE ************1234
TVA      HT     TVA     TTC
5,5%    7,20    0,40    7,60
TOTAL TVA                   0,40
MERCI DE VOTRE VISITE
"""


def test_french_receipt_end_to_end() -> None:
    out = extract(page_from_text(FRENCH))
    values = {k: v["value"] for k, v in out["fields"].items()}
    assert values == {
        "merchant_name": "CARREFOUR CITY", "merchant_address": "12 RUE DE LA REPUBLIQUE, 69003 LYON",
        "siret": "30326504500011", "vat_number": "FR40303265045", "date": "2026-11-25", "time": "14:32",
        "total": "7.60", "vat_total": "0.40", "currency": "EUR", "payment_method": "card",
    }
    assert out["vat_lines"] == [{"rate": "5.5", "base": "7.20", "amount": "0.40"}]
    items = [{k: v for k, v in i.items() if k != "confidence"} for i in out["items"]]
    assert items == [
        {"name": "BAGUETTE TRADITION", "quantity": "2", "unit_price": "1.10", "total_price": "2.20"},
        {"name": "JAMBON BLANC X4", "total_price": "4.50"},
        {"name": "TOMATES GRAPPE", "quantity": "0.35", "unit_price": "3.99", "total_price": "1.40"},
        {"name": "REMISE FIDELITE", "total_price": "-0.50"},  # discounts are items with a negative price
    ]
    assert not out["needs_review"]


def test_tilted_photo_with_split_columns() -> None:
    page = page_from_text(FRENCH, slope=0.04, split_columns=True)
    assert len({w.line_id for w in page.words}) > FRENCH.strip("\n").count("\n") + 1
    out = extract(page)
    values = {k: v["value"] for k, v in out["fields"].items()}
    assert values["total"] == "7.60" and values["date"] == "2026-11-25"
    assert values["merchant_name"] == "CARREFOUR CITY"
    rows = [" ".join(page.words[i].text for i in row.words) for row in build_rows(page)]
    assert "TOTAL TTC 7,60 EUR" in rows


@pytest.mark.parametrize("total_line, expected", [
    ("TOTAL                   12,50", "12.50"),
    ("TOTAL TTC               12,50 €", "12.50"),
    ("NET A PAYER            12,50", "12.50"),
    ("MONTANT DU             12,50 EUR", "12.50"),
    ("A PAYER                12,50", "12.50"),
    ("TOTAL EUR              12,50", "12.50"),
    ("TOTAL                  1 234,56", "1234.56"),
])
def test_total_keywords(total_line: str, expected: str) -> None:
    text = f"""
BOULANGERIE DUPONT
3 PLACE DU MARCHE
75011 PARIS
25.11.2026 08h15
PAIN AU CHOCOLAT          1,20
SOUS-TOTAL               11,30
TOTAL HT                 10,42
TOTAL TVA                 0,65
{total_line}
ESPECES                  20,00
RENDU                     7,50
"""
    out = extract(page_from_text(text))
    assert out["fields"]["total"]["value"] == expected
    assert out["fields"]["payment_method"]["value"] == "cash"
    assert out["fields"]["date"]["value"] == "2026-11-25"


def test_total_value_on_the_next_line() -> None:
    text = """
EPICERIE DU COIN
8 RUE PASTEUR
44000 NANTES
03/02/2025
CAFE MOULU 250G            2,85
TOTAL
                          2,85 €
"""
    out = extract(page_from_text(text))
    assert out["fields"]["total"]["value"] == "2.85"
    assert out["fields"]["date"]["value"] == "2025-02-03"


def test_street_named_after_a_date_is_not_the_date() -> None:
    text = """
PHARMACIE DU CENTRE
2 RUE DU 8 MAI 1945
21000 DIJON
DOLIPRANE 1000MG           2,18
TOTAL                      2,18
07/12/2020 22:37
"""
    out = extract(page_from_text(text))
    assert out["fields"]["date"]["value"] == "2020-12-07"
    assert out["fields"]["merchant_address"]["value"] == "2 RUE DU 8 MAI 1945, 21000 DIJON"


def test_meal_voucher_wins_over_carte() -> None:
    text = """
BISTROT DES HALLES
TOTAL                     27,70
CARTE TICKET RESTAURANT   27,70
"""
    out = extract(page_from_text(text))
    assert out["fields"]["payment_method"]["value"] == "meal_voucher"
    assert out["fields"]["payment_method"]["text"] == "TICKET RESTAURANT"


SROIE_LIKE = """
        BOOK TA .K (TAMAN DAYA) SDN BHD
                 (789417-W)
        NO.53 55,57 & 59, JALAN SAGU 18,
                 TAMAN DAYA,
           81100 JOHOR BAHRU, JOHOR.
           TEL: 07-3507405
           GST ID: 000306020352
        TAX INVOICE
DATE: 25-12-18 10:27 PM      CASHIER: NOR
ITEM            QTY   PRICE    AMOUNT
KF MODELLING CLAY  1   9.00      9.00
TOTAL (INCL GST)             RM 9.05
ROUNDING ADJ                    -0.05
                             RM 9.00
CASH                         RM 10.00
CHANGE                        RM 1.00
GST SUMMARY   AMOUNT(RM)  TAX(RM)
SR @ 6%          8.49       0.51
"""


def test_sroie_like_receipt() -> None:
    out = extract(page_from_text(SROIE_LIKE, split_columns=True))
    values = {k: v["value"] for k, v in out["fields"].items()}
    assert values["merchant_name"] == "BOOK TA .K (TAMAN DAYA) SDN BHD"
    assert values["merchant_address"] == ("NO.53 55,57 & 59, JALAN SAGU 18, TAMAN DAYA, "
                                          "81100 JOHOR BAHRU, JOHOR.")
    assert values["date"] == "2018-12-25"
    assert values["time"] == "22:27"
    assert values["total"] == "9.00"  # the rounded amount due
    assert values["currency"] == "MYR"
    assert values["payment_method"] == "cash"
    assert out["vat_lines"] == [{"rate": "6.0", "base": "8.49", "amount": "0.51"}]


SPEEDMART_LIKE = """
99 SPEED MART S/B (519537-X)
INVOICE NO : 17714/102/T0382   15-06-16 18:35
8019 MARIGOLD HL MILK 1L        RM13.58
559 TIGER BEER BOTTLE 460ML     RM13.70
Total Sales (Inclusive GST)     RM 27.28
Rounding Adjustment             RM 0.02
Rounding                        RM 27.30
CASH                            RM 30.00
CHANGE                          RM 2.70
"""


def test_rounded_total_on_a_row_that_names_itself() -> None:
    """99 Speedmart prints the rounded amount due on a "Rounding" row after the adjustment row: that
    amount is the total, the adjustment's own amount never is."""
    out = extract(page_from_text(SPEEDMART_LIKE, split_columns=True))
    assert out["fields"]["total"]["value"] == "27.30"
    far = SPEEDMART_LIKE.replace("RM 27.30", "RM 2.30")  # not a rounding of 27.28: keep the keyword total
    assert extract(page_from_text(far, split_columns=True))["fields"]["total"]["value"] == "27.28"


@pytest.mark.parametrize(("text", "total"), [
    # the rounded row misread ("RH" for "RM"): no keyword, but 60.31 - 0.01 is on it
    ("TOTAL AMT.... 60.31\nROUNDING ADJ... -0.01\nRH 60.30\nCASH..... 70.30", "60.30"),
    # the amount due misread ("Totel Amt Peyable"), the adjustment in brackets
    ("Total Amt Incl. GST @ 6% : 8.48\nRounding Adjustment: (0.02)\nTotel Amt Peyable : 8.50\n"
     "Paid Amount: 100.00", "8.50"),
    # columns came apart: the adjustment on the row above the "Rounding" label, a quantity on the due row
    ("Item 3 Total with GST @ 6% 41.48\nQty 8 0.02\nRounding\nTotal Saving 0.00 Total 41.50\n"
     "Tender 41.50", "41.50"),
    # only a SUBTOTAL row: rounded the same way
    ("SUBTOTAL (QTY 4) RM41.43\nROUNDING RM0.02\nSUBTOTAL (QTY 4) RM41.45\nCASH RM51.50", "41.45"),
    # only a SUBTOTAL row, its amount with a space after the point
    ("Dark Rye Bun RM6.90 S\n3 No\nSUBTOTAL RM 20. 40\nCASH RM20.40", "20.40"),
    # a sum that is no cash rounding (not a multiple of 5 cents) is not the total
    ("TOTAL AMT.... 60.33\nROUNDING ADJ... -0.01\nRH 60.32\nCASH..... 70.30", "60.33"),
    # no amount on the next rows is the total plus or minus the adjustment: the keyword total stays
    ("TOTAL AMT.... 60.31\nROUNDING ADJ... -0.01\nRH 60.40\nCASH..... 70.30", "60.31"),
])
def test_rounded_total_found_by_its_sum(text: str, total: str) -> None:
    """SROIE's key is the rounded amount due; where the row that prints it is not plain (a misread
    keyword, a quantity beside it), the total plus or minus the printed adjustment finds it."""
    assert extract(page_from_text(text, split_columns=True))["fields"]["total"]["value"] == total


def test_address_rows_counted_from_the_address_not_the_name() -> None:
    """A company number and a "formerly known as" block between the name and the address do not push the
    address's state line out of reach; a state's honorific (`Pahang Darul Makmur`) is a state line."""
    text = """
Gerbang Alaf Restaurants Sdn Bhd
(65351-M)
formerly known as
Golden Arches Restaurants Sdn Bhd
Licensee of McDonald's
Level 6, Bangunan TH, Damansara Uptown3
No.3, Jalan SS21/39,47400 Petaling Jaya
Selangor
(GST ID No: 000504664064)
TOTAL 12.50
"""
    fields = extract(page_from_text(text))["fields"]
    # (rows that print their own commas are joined with a space: `_row_sep`)
    assert fields["merchant_address"]["value"] == ("Level 6, Bangunan TH, Damansara Uptown3 "
                                                   "No.3, Jalan SS21/39,47400 Petaling Jaya Selangor")
    pahang = """
TF Value-Mart Sdn Bhd (482123-U)
GST Reg No 000184401920
Jalan Tras Batu 1
28700 Bentong
Pahang Darul Makmur.
Tel: 09-2201388
TOTAL 12.50
"""
    assert extract(page_from_text(pahang))["fields"]["merchant_address"]["value"] == (
        "Jalan Tras Batu 1, 28700 Bentong, Pahang Darul Makmur.")
    # a chain's outlet under its head office's address is part of the address; the GST row is not
    speedmart = """
99 SPEED MART S/B (519537-X)
LOT P.T. 2811, JALAN ANGSA,
TAMAN BERKELEY
41150 KLANG, SELANGOR
1245-DESA SRI HARTAMAS
GST ID. NO: 000181747712
TOTAL 12.50
"""
    assert extract(page_from_text(speedmart))["fields"]["merchant_address"]["value"] == (
        "LOT P.T. 2811, JALAN ANGSA, TAMAN BERKELEY 41150 KLANG, SELANGOR 1245-DESA SRI HARTAMAS")
    diy = """
MR D.I.Y. (JOHOR) SDN BHD
(CO.REG :933109-X)
LOT 1851-A & 1851-B, JALAN KPB 6,
KAWASAN PERINDUSTRIAN BALAKONG,
43300 SERI KEMBANGAN, SELANGOR
(MR DIY TESCO TERBAU)
-INVOICE-
TOTAL 12.50
"""
    assert extract(page_from_text(diy))["fields"]["merchant_address"]["value"] == (
        "LOT 1851-A & 1851-B, JALAN KPB 6, KAWASAN PERINDUSTRIAN BALAKONG, 43300 SERI KEMBANGAN, SELANGOR "
        "(MR DIY TESCO TERBAU)")


def test_a_receipt_code_at_the_top_is_no_postcode() -> None:
    """`A03096` printed above the header is a code, not a postcode: the company row below a slogan is
    still looked for (it is searched above the first postcode only)."""
    text = """
A03096
Home of Seicky Bones
Timeless Kitchenette Sdn Bhd
Company no : 1174703-K
Lot 50, Floor T2, Sky Avenue Genting Highlands
Pahang, 69000 Pahang Malaysia
TOTAL 12.50
"""
    assert extract(page_from_text(text))["fields"]["merchant_name"]["value"] == "Timeless Kitchenette Sdn Bhd"


@pytest.mark.parametrize(("head", "name"), [
    ("Cele R\nMBB 264100\nKEDAI PAPAN YEW CHUAN\n(0005583085-K)", "KEDAI PAPAN YEW CHUAN"),
    ("3180404 staff ret\nBERRY'S CAKE HOUSE\n(Co No. 315481-T) GST No. 001287233536", "BERRY'S CAKE HOUSE"),
    ("...THANK YOU AND DO VISIT US AGAIN...\nCashier [P.NISANTHI] Machine [003]\n[19/06/17] [11:37]\n"
     "FIVE STAR CASH & CARRY\n(1365663-P)", "FIVE STAR CASH & CARRY"),
    # a row with digits above the number is no name: the first row stays the name
    ("KEDAI RUNCIT AH SENG\nNO 12 TINGKAT 3\n(0005583085-K)", "KEDAI RUNCIT AH SENG"),
])
def test_the_name_is_the_row_above_the_registration_number(head: str, name: str) -> None:
    """Without a legal form in the header, the row printed over the company's bracketed registration
    number is its name, whatever handwriting or cashier line the OCR read above it."""
    text = head + "\nLOT 276 JALAN BANTING\n43800 DENGKIL, SELANGOR.\nTEL:03-87686092\nTOTAL 12.50\n"
    assert extract(page_from_text(text))["fields"]["merchant_name"]["value"] == name


def test_misread_vat_number_is_repaired_and_repairs_the_siret() -> None:
    """Tesseract read a 0 as 9 in the SIREN printed twice: "652 232 249" for 652232240. The VAT number's key
    names the one SIREN it can be; the SIRET is then that SIREN and its own establishment number."""
    text = """
CAFE DE LA GARE
SIRET 652 232 249 00760
N°TVA intracom. FR 25 652232249
TOTAL 12,50
"""
    fields = extract(page_from_text(text))["fields"]
    assert fields["vat_number"]["value"] == "FR25652232240"
    assert fields["siret"]["value"] == "65223224000760"
    assert fields["siret"]["confidence"] < 0.9  # repaired values go to review sooner
    alone = extract(page_from_text(text.replace("N°TVA intracom. FR 25 652232249", "")))["fields"]
    assert "siret" not in alone  # one checksum digit cannot tell which digit was misread
    wrong_nic = extract(page_from_text(text.replace("00760", "00762")))["fields"]
    assert "siret" not in wrong_nic and wrong_nic["vat_number"]["value"] == "FR25652232240"


def test_page_rows_are_built_once_per_page_and_again_for_new_words() -> None:
    """The rules, field assembly and row smoothing share one page's rows: `page_rows` equals
    `build_rows`, builds them once per page, and builds them again when the page's word list is
    replaced (or its size changes); a caller changing its list of rows does not change the next one's."""
    page = page_from_text(FRENCH, slope=0.04, split_columns=True)
    first = page_rows(page)
    assert first == build_rows(page)
    assert [r is s for r, s in zip(first, page_rows(page), strict=True)] == [True] * len(first)  # kept
    first.pop()
    assert len(page_rows(page)) == len(first) + 1
    other = page_from_text(FRENCH.replace("CARREFOUR CITY", "MONOPRIX"))
    page.words = other.words
    assert page_rows(page) == build_rows(other) != first
    page.width += 1
    assert page_rows(page) == build_rows(page)


def test_rules_extractor_interface() -> None:
    ext = RulesExtractor()
    assert isinstance(ext, Extractor) and not ext.uses_images
    assert (ext.name, ext.version) == ("rules", "3")
    pages = [page_from_text(FRENCH), OcrPage([], 100, 100)]
    labels = ext.label(pages, [None, None])
    assert [len(x) for x in labels] == [len(pages[0].words), 0]
    assert label_page(OcrPage([], 10, 10)) == []


def test_blank_and_noise_pages_do_not_crash() -> None:
    out = extract(page_from_text("~~~~ ||| ...\n---\n*"))
    assert out["needs_review"] and "total" not in out["fields"]


def _sroie_page(stem: str) -> OcrPage:
    words = []
    for line_id, line in enumerate((SROIE / "box" / f"{stem}.csv").read_text(errors="replace").splitlines()):
        parts = line.split(",", 8)
        if len(parts) < 9:
            continue
        xs, ys = [int(parts[i]) for i in (0, 2, 4, 6)], [int(parts[i]) for i in (1, 3, 5, 7)]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        text, pos = parts[8], 0
        for tok in text.split():
            start = text.index(tok, pos)
            pos = start + len(tok)
            n = max(1, len(text))
            box = (x0 + (x1 - x0) * start // n, y0, x0 + (x1 - x0) * pos // n, y1)
            words.append(Word(tok, box, 1.0, line_id))
    return OcrPage(words, max(w.box[2] for w in words) + 1, max(w.box[3] for w in words) + 1)


@pytest.mark.sroie
@pytest.mark.skipif(not SROIE.is_dir(), reason="../shared/data/sroie is absent")
def test_sroie_held_out_key_fields_from_their_ocr_lines() -> None:
    """The rules on SROIE's own OCR lines (held-out split): a floor under the measured accuracy."""
    stems = sorted(p.stem for p in (SROIE / "box").glob("*.csv"))
    held = stems[int(0.8 * len(stems)):]
    hits = {"company": 0, "date": 0, "total": 0}
    for stem in held:
        key = json.loads((SROIE / "key" / f"{stem}.json").read_text())
        fields = extract(_sroie_page(stem))["fields"]
        got = {k: v["value"] for k, v in fields.items()}
        hits["company"] += " ".join(str(got.get("merchant_name")).split()) == " ".join(key["company"].split())
        hits["date"] += got.get("date") == parse_date(key["date"])
        hits["total"] += got.get("total") == parse_amount(key["total"], allow_integer=True)
    n = len(held)
    assert hits["date"] / n >= 0.9, hits
    assert hits["total"] / n >= 0.8, hits
    assert hits["company"] / n >= 0.75, hits


def test_misread_total_is_outvoted_by_payment_and_vat_table() -> None:
    text = """
BRICORAMA
64 RUE DE LA GARE
33000 BORDEAUX
14/11/2026 11h21
PEINTURE BLANCHE 2,5L      242,72
TOTAL TTC                  242,12 EUR
CB                         242,72
Code Taux      HT        TVA
D    20 %    202,27     40,45
MONTANT : 242,72 EUR
"""
    out = extract(page_from_text(text))
    assert out["fields"]["total"]["value"] == "242.72"
    assert out["fields"]["total"]["text"] == "242,72"


def test_total_with_an_ocr_space_after_the_comma() -> None:
    text = """
AUX DELICES DE LA GARE
17/05/2020 21h14
CANETTE SODA 33CL           1,69
TOTAL HT                   24,56
TOTAL TTC EUR              26, 80
ESPECES                    27,00
"""
    out = extract(page_from_text(text))
    assert out["fields"]["total"]["value"] == "26.80"


def test_lost_shop_name_does_not_make_the_street_a_name() -> None:
    text = """
ei 103 BIS IMPASSE EMILE ZOLA
ee 75002 PARIS
TEL. 05 72 13 67 56
27/06/2022 13:40
TOTAL                       3,05
"""
    out = extract(page_from_text(text))
    assert "merchant_name" not in out["fields"]
    assert out["fields"]["merchant_address"]["value"] == "103 BIS IMPASSE EMILE ZOLA, 75002 PARIS"


def test_item_quantities_printed_like_amounts() -> None:
    text = """
LE BOUCHON LYONNAIS
12 RUE FOCH
21000 DIJON
Désignation          Qté    Prix   Total
COCA COLA 1,5L       2.00   2.00    4.00
1,00 MENU ENFANT           11,35
TOTAL                      15,35
"""
    out = extract(page_from_text(text))
    items = [{k: v for k, v in i.items() if k != "confidence"} for i in out["items"]]
    assert items == [
        {"name": "COCA COLA 1,5L", "quantity": "2", "unit_price": "2.00", "total_price": "4.00"},
        {"name": "MENU ENFANT", "quantity": "1", "total_price": "11.35"},
    ]


def test_restaurant_named_table_is_a_name() -> None:
    text = """
LA TABLE D'ANTOINE
146 AVENUE DES ECOLES
78000 VERSAILLES
TABLE 17 COUVERTS 4
21/11/22 14:39:25
TOTAL                      45,00
"""
    out = extract(page_from_text(text))
    assert out["fields"]["merchant_name"]["value"] == "LA TABLE D'ANTOINE"


_TOKENS = st.one_of(
    st.sampled_from(["TOTAL", "TTC", "TVA", "CB", "SIRET", "20%", "5,5", "x", "2", "RM", "€", "EUR", "Le",
                     "25/11/2026", "14h32", "12,50", "-3,00", "1 234,56", "FR40303265045", "73282932000074",
                     "RUE", "75002", "PARIS", "SDN", "BHD", "ROUNDING", "(", ")", "", "*"]),
    st.text(alphabet="AZaz09,.:/%-€ ", max_size=8),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_TOKENS, min_size=1, max_size=6), max_size=25), st.floats(-0.1, 0.1))
def test_any_page_gives_valid_labels_and_a_valid_receipt(rows: list[list[str]], slope: float) -> None:
    words = []
    for r, row in enumerate(rows):
        for c, tok in enumerate(row):
            x, y = 10 + 80 * c, int(10 + 30 * r + slope * 80 * c)
            words.append(Word(tok, (x, max(0, y), x + 70, max(0, y) + 20), 0.9, r))
    page = OcrPage(words, 600, 40 + 30 * len(rows))
    out = extract(page)  # checks the label invariants too
    assert set(out["fields"]) <= {"merchant_name", "merchant_address", "siret", "vat_number", "date", "time",
                                  "total", "vat_total", "currency", "payment_method"}
    for f in out["fields"].values():
        assert 0 <= f["confidence"] <= 1 and f["boxes"]
    assert 0 <= out["confidence"] <= 1


MULTI_ROW_NAME = """
     LIAN CHI PU TIAN VEGETARIAN
      RESTAURANT SDN BHD
          (1045563-K)
   NO 12, JALAN SS 2/24, 47300 PETALING JAYA
DATE: 12/03/2018
TOTAL                      RM 18.50
"""


def test_name_over_two_rows_keeps_both_halves() -> None:
    """The company row only says `RESTAURANT SDN BHD`: the shop's own name is the row above."""
    fields = extract(page_from_text(MULTI_ROW_NAME))["fields"]
    assert fields["merchant_name"]["value"] == "LIAN CHI PU TIAN VEGETARIAN RESTAURANT SDN BHD"
    assert fields["merchant_address"]["value"] == "NO 12, JALAN SS 2/24, 47300 PETALING JAYA"
    # a company row that names the shop itself does not take the line above (a slogan, a header)
    own = MULTI_ROW_NAME.replace("RESTAURANT SDN BHD", "KEDAI RUNCIT SDN BHD")
    assert extract(page_from_text(own))["fields"]["merchant_name"]["value"] == "KEDAI RUNCIT SDN BHD"


def test_name_whose_bracket_closes_on_the_next_row() -> None:
    text = """
     YEW CHUAN ENTERPRISE (SETIA
            ALAM)
   NO 8, JALAN SETIA 1, 40170 SHAH ALAM
TOTAL                      RM 9.90
"""
    fields = extract(page_from_text(text))["fields"]
    assert fields["merchant_name"]["value"] == "YEW CHUAN ENTERPRISE (SETIA ALAM)"


@pytest.mark.parametrize(("printed", "name"), [
    ("99 SPEED MART S/B (519537-X)", "99 SPEED MART S/B"),
    ("FARMASI MALURI S/B(587969-U)", "FARMASI MALURI S/B"),  # glued to the legal form: one OCR word
    ("MR D.I.Y. (M) SDN BHD (CO. NO: 860671-D)", "MR D.I.Y. (M) SDN BHD"),
    ("Dimiliki: BANH MI CAFE SDN BHD 1110644-W", "BANH MI CAFE SDN BHD"),
    ("99 SPEED MART 5/B", "99 SPEED MART S/B"),  # the deep OCR's 5 for S
    ("RESTAURANT 1988 SDN BHD", "RESTAURANT 1988 SDN BHD"),  # a number in the name stays
    ("KING'S CONFECTIONERY S/B 273500-U (KJ1)", "KING'S CONFECTIONERY S/B"),  # no brackets, a branch
    ("Anzel Advertising (M) Sdn bhd (759785-H)", "Anzel Advertising (M) Sdn bhd"),  # a lower-case form
])
def test_registration_number_and_owner_prefix_are_not_the_name(printed: str, name: str) -> None:
    text = f"""
{printed}
NO 5, JALAN PUDU, 55100 KUALA LUMPUR
TOTAL                      RM 9.90
"""
    assert extract(page_from_text(text))["fields"]["merchant_name"]["value"] == name


@pytest.mark.parametrize(("printed", "address"), [
    ("Lot 6, Jalan Batai, 50490 Kuala Lumpur T: 03-2093 7358 | F: 03-2093 7359",
     "Lot 6, Jalan Batai, 50490 Kuala Lumpur"),
    ("NO 19-G, JALAN TASIK UTAMA 4, 57000 KUALA LUMPUR, 016-5498845",
     "NO 19-G, JALAN TASIK UTAMA 4, 57000 KUALA LUMPUR"),
    ("12 RUE DE LA PAIX 75002 PARIS", "12 RUE DE LA PAIX 75002 PARIS"),  # a postcode is not a phone
])
def test_phone_printed_after_the_address_is_not_the_address(printed: str, address: str) -> None:
    text = f"""
KEDAI RUNCIT SDN BHD
{printed}
TOTAL                      RM 9.90
"""
    assert extract(page_from_text(text))["fields"]["merchant_address"]["value"] == address


def test_address_rows_ending_in_a_misread_comma_and_accents_on_malay_text() -> None:
    """PP-OCR reads a row's final comma as a period (`SEKSYEN 9.` / `TAMAN SERDANG RAYA`) and puts
    accents on worn Malay print (`JÁLAN`): a ringgit receipt has neither."""
    text = """
LIM SENG THO HARDWARÉ TRADING
NO.32 & 33 JÁLAN SR 1/9 SEKSYEN 9.
TAMAN SERDANG RAYA 43300 SERI KEMBANGAN
TOTAL                      RM 9.90
"""
    fields = extract(page_from_text(text))["fields"]
    assert fields["merchant_name"]["value"] == "LIM SENG THO HARDWARE TRADING"
    assert fields["merchant_address"]["value"] == ("NO.32 & 33 JALAN SR 1/9 SEKSYEN 9, TAMAN SERDANG RAYA "
                                                   "43300 SERI KEMBANGAN")
    french = extract(page_from_text("CAFÉ DE LA GARE\n12 RUE DE LA PAIX\n75002 PARIS\nTOTAL TTC 12,50 EUR"))
    assert french["fields"]["merchant_name"]["value"] == "CAFÉ DE LA GARE"  # French keeps its accents


def test_closing_lines_and_logo_debris_above_the_name_do_not_hide_it() -> None:
    """Some shops print their thanks and return policy above their name, under a logo the OCR reads as
    debris: the company row is still found among the first rows that say something."""
    text = """
O.UU U.UU
3180404
****** THANK YOU ******
===== PLEASE VISIT US AGAIN =====
Goods Sold Are Not Refundable
Returnable Or Exchangeable
20
Rn
ed 2814lis
CHECKERS HYPERMARKET SDN BHD
LOT 2942 & 2945, JLN SERI SENTOSA 8,
58000 KUALA LUMPUR.
TOTAL                      RM 9.90
"""
    fields = extract(page_from_text(text))["fields"]
    assert fields["merchant_name"]["value"] == "CHECKERS HYPERMARKET SDN BHD"
    assert fields["merchant_address"]["value"].startswith("LOT 2942 & 2945, JLN SERI SENTOSA 8")
    # the branch in brackets under the company row is part of the name; a company number is not
    branch = text.replace("SDN BHD\n", "SDN BHD\n(JALAN KLANG LAMA)\n")
    fields = extract(page_from_text(branch))["fields"]
    assert fields["merchant_name"]["value"] == "CHECKERS HYPERMARKET SDN BHD (JALAN KLANG LAMA)"
    assert fields["merchant_address"]["value"].startswith("LOT 2942")
    number = text.replace("SDN BHD\n", "SDN BHD\n(961394-X)\n")
    fields = extract(page_from_text(number))["fields"]
    assert fields["merchant_name"]["value"] == "CHECKERS HYPERMARKET SDN BHD"


def test_jl_street_and_selangor_de_belong_to_the_address() -> None:
    text = """
RESTAURANT SIN DU
K3-113, JL IBRAHIM SULTAN
80300 JOHOR BAHRU
SELANGOR D.E.
TOTAL                      RM 9.90
"""
    address = extract(page_from_text(text))["fields"]["merchant_address"]["value"]
    assert address.startswith("K3-113, JL IBRAHIM SULTAN") and address.endswith("SELANGOR D.E.")


def page_from_print(rows: list[list[tuple[str, int]]], *, char_w: int = 12) -> OcrPage:
    """Rows of (word, print height in px) → OCR words: a French shop's header mixes a logo-sized name
    with small print, and the rules read the print sizes."""
    words: list[Word] = []
    y = 10
    for line_id, row in enumerate(rows):
        tallest = max(h for _, h in row)
        x = 10
        for text, h in row:
            top = y + tallest - h  # words of a row share their baseline
            words.append(Word(text, (x, top, x + len(text) * char_w, top + h), 0.95, line_id))
            x += (len(text) + 1) * char_w
        y += int(tallest * 1.3)
    return OcrPage(words, 60 * char_w, y + 10)


FRENCH_TAIL = [[("15/11/2022", 24), ("20:34", 24)], [("TOTAL", 24), ("TTC", 24), ("45,00", 24)]]
PARIS = [[("163", 24), ("Avenue", 24), ("Ledru", 24), ("Rollin", 24)], [("75011", 24), ("PARIS", 24)]]


@pytest.mark.parametrize(("head", "name"), [
    # "Document provisoire", printed large above a restaurant's bill, is no name
    ([[("DOCUMENT", 40), ("PROVISOIRE", 40)], [("Restaurant", 28), ("BASIQUE", 28)]], "Restaurant BASIQUE"),
    # a tagline printed small beside a logo-sized name
    ([[("NATURALIA", 120), ("Soyez", 40), ("libre", 30), ("de", 30), ("nature", 32)]], "NATURALIA"),
    # the trade in small print over the shop's own name in large print
    ([[("Boucherie", 28)], [("André", 70)]], "Boucherie André"),
    # a name in large print over two rows, joined by a small word
    ([[("L'ATELIER", 80)], [("des", 26)], [("MÉLANGES", 80)]], "L'ATELIER des MÉLANGES"),
    # a logo, then the name printed with its article
    ([[("DIVAN", 30)], [("LE", 28), ("DIVAN", 28)]], "LE DIVAN"),
])
def test_french_shop_names_around_logos_and_small_print(head: list, name: str) -> None:
    fields = extract(page_from_print(head + PARIS + FRENCH_TAIL))["fields"]
    assert fields["merchant_name"]["value"] == name
    assert fields["merchant_address"]["value"] == "163 Avenue Ledru Rollin, 75011 PARIS"


@pytest.mark.parametrize(("head", "name"), [
    # a slogan in small print above a name in large print is not part of the name
    ([[("Votre", 26), ("supérette", 26)], [("PROXI", 70)]], "PROXI"),
    # a logo over the name and its branch: the branch is not an article
    ([[("market", 90)], [("MARKET", 30), ("DE", 30), ("MONTROUGE", 30)]], "market"),
])
def test_what_stays_out_of_a_french_shop_name(head: list, name: str) -> None:
    assert extract(page_from_print(head + PARIS + FRENCH_TAIL))["fields"]["merchant_name"]["value"] == name


BUTCHER = """
BOUCHERIE ANDRE
2 AVENUE DU LOUP PENDU
69140 RILLIEUX-LA-PAPE
MERGUEZ X6
1x 4,84EUR                 4,84
Total CHARCUTERIE          4,84
RAVE
0,274kg 2,99EUR/kg         0,82
WC NET GEL FLEURS C..      1,89
Total FRUITS               2,71
Total EUR                  7,55
Le 04/10/2022 17:28
"""


def test_items_through_section_totals_and_weighed_articles() -> None:
    """A butcher's till totals each section (`Total CHARCUTERIE`) before the amount due (`Total EUR`):
    the items go on to the amount due. A weighed article prints its weight and price per kilo under
    its name, and `NET` inside an article's name is no net total."""
    out = extract(page_from_text(BUTCHER))
    assert out["fields"]["total"]["value"] == "7.55"
    items = [{k: v for k, v in i.items() if k != "confidence"} for i in out["items"]]
    assert items == [
        {"name": "MERGUEZ X6", "quantity": "1", "unit_price": "4.84", "total_price": "4.84"},
        {"name": "RAVE", "quantity": "0.274", "unit_price": "2.99", "total_price": "0.82"},
        {"name": "WC NET GEL FLEURS C..", "total_price": "1.89"},
    ]
    net = extract(page_from_text(BUTCHER.replace("Total EUR  ", "NET A PAYER")))
    assert net["fields"]["total"]["value"] == "7.55"  # a row that starts with NET still is the total


@pytest.mark.parametrize(("line", "name", "quantity", "unit_price"), [
    ("5 *AVOCAT                1.69", "AVOCAT", None, None),  # 5: the VAT code column, not a count
    ("1 - SALADE DE FRUITS 250  5.20", "SALADE DE FRUITS 250", "1", None),
    ("2 25 CL WARSTEINER (3.50) 7.00", "25 CL WARSTEINER", "2", "3.50"),  # 2 x 3.50: the count
    ("1 (fr) the au lait        4.90", "(fr) the au lait", "1", None),
])
def test_item_rows_of_french_tills(line: str, name: str, quantity: str | None,
                                   unit_price: str | None) -> None:
    text = f"CARREFOUR CITY\n12 RUE DE LA PAIX\n75002 PARIS\n{line}\nTOTAL A PAYER              9.99\n"
    (item,) = extract(page_from_text(text))["items"]
    assert (item["name"], item.get("quantity"), item.get("unit_price")) == (name, quantity, unit_price)


def test_weighed_article_with_a_multiplication_sign() -> None:
    """`1,144 kg × 2,85 €/kg` (the × sign, as the bundled samples print it) is the weight and the price
    per kilo of the article named on the row above, as `X` is."""
    text = ("NETTO\n198 BD PASTEUR\n30000 NIMES\nPOMMES GOLDEN\n1,144 kg × 2,85 €/kg   3,26 €\n"
            "Total 3,26 EUR\n")
    (item,) = extract(page_from_text(text))["items"]
    assert (item["name"], item["quantity"], item["unit_price"], item["total_price"]) == (
        "POMMES GOLDEN", "1.144", "2.85", "3.26")


def test_a_vat_lines_amounts_are_no_siret() -> None:
    """`10% 120.58 12.06 132.64`: fourteen digits in a row of amounts, which pass the SIRET checksum by
    chance, are no SIRET without the keyword."""
    text = "CHEZ MARCEL\n41 PLACE SAINT-MICHEL\n21000 DIJON\n10% 120.58 12.06 132.64\nTOTAL TTC 132,64\n"
    assert "siret" not in extract(page_from_text(text))["fields"]


def test_item_and_shop_names_get_their_os_back() -> None:
    """PP-OCR reads a narrow capital O as a zero (`BL0NDE`): names, addresses and items are repaired
    in assembly, amounts and codes with digits are not."""
    text = "BI0COOP\n15 RUE VICT0R HUGO\n63000 CLERMONT\nBIERE BL0NDE 6X25CL   5,09\nTOTAL TTC   5,09\n"
    out = extract(page_from_text(text))
    assert out["fields"]["merchant_name"]["value"] == "BIOCOOP"
    assert out["fields"]["merchant_address"]["value"] == "15 RUE VICTOR HUGO, 63000 CLERMONT"
    assert [(i["name"], i["total_price"]) for i in out["items"]] == [("BIERE BLONDE 6X25CL", "5.09")]


def test_a_misread_thanks_for_shopping_is_no_name() -> None:
    """`THANK YOU FOR SHOPPING WITH myNEWS.com` printed over the name, its first words misread (`TQFOR`)."""
    text = """
TQFOR SHOPPING WITH myNEWS.com
PAGOH REST AND SERVICE AREA
LOT R1, KWS REHAT & RAWAT PAGOH ARAH UTARA,
84600 PAGOH, JOHOR
TOTAL                      RM 9.90
"""
    assert extract(page_from_text(text))["fields"]["merchant_name"]["value"] == "PAGOH REST AND SERVICE AREA"


def test_a_name_over_two_rows_ends_at_its_registration_number() -> None:
    """`RESTAURANT JIAWEI` / `JIAWEI HOUSE` / `002693074-K`: without a legal form, the plain rows from the
    first one down to the registration number are the name."""
    text = """
RESTAURANT JIAWEI
JIAWEI HOUSE
002693074-K
13, JLN TASIK UTAMA 8
MEDAN NIAGA DAMAI SG BESI
TOTAL                      RM 9.90
"""
    fields = extract(page_from_text(text))["fields"]
    assert fields["merchant_name"]["value"] == "RESTAURANT JIAWEI JIAWEI HOUSE"
    alone = text.replace("002693074-K\n", "")  # without the number, the second row is not taken
    assert extract(page_from_text(alone))["fields"]["merchant_name"]["value"] == "RESTAURANT JIAWEI"


def test_an_address_that_starts_with_a_tower() -> None:
    """`A-16-1, Tower A, Northpoint Office, ...`: no street number, no street word but the tower."""
    text = """
Golden Scoop Sdn Bhd (169609-A)
A-16-1, Tower A, Northpoint Office, Mid Valley
City, No1, Medan Syed Putra Utara Kuala
Lumpur
GST ID: 001513148416
TOTAL                      RM 9.90
"""
    assert extract(page_from_text(text))["fields"]["merchant_address"]["value"] == (
        "A-16-1, Tower A, Northpoint Office, Mid Valley City, No1, Medan Syed Putra Utara Kuala Lumpur")
