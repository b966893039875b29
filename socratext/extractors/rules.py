"""The rules extractor: labels OCR words with keywords, regexes and position on the receipt.

It needs no model, so it is the fallback when no layout model is installed and the baseline that
every trained model must beat. It reads the page as visual rows (OCR lines that sit at the same
height are merged, so that `TOTAL` on the left and `12,50` far to the right belong together, which
Tesseract and the SROIE boxes often split), then:

- header: merchant name = first non-trivial row(s) at the top, address = the following street /
  postcode rows; SIRET and VAT numbers by keyword + checksum;
- date / time anywhere by regex (a `DATE` keyword breaks ties);
- total = the amount of a TOTAL / NET A PAYER / GRAND TOTAL... row (not TOTAL HT, SOUS-TOTAL, TOTAL TVA...);
- VAT table rows (rate + base + amount) and the VAT total;
- items = rows with amounts between the header and the total (a name row followed by a prices-only row
  is one item); payment method and currency by keyword.

Probabilities are constants that reflect how often each rule is right (0.9 keyword + strict regex,
0.6 weaker evidence), so that field assembly's confidence and review flag stay meaningful.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from decimal import Decimal
from statistics import median

from PIL import Image

from socratext.document import OcrPage, WordLabel
from socratext.fields.checks import item_consistent, vat_line_consistent
from socratext.fields.normalize import (
    find_amounts,
    find_dates,
    find_payment_method,
    find_times,
    fold,
    parse_amount,
    parse_currency,
    parse_quantity,
    parse_rate,
    parse_vat_number,
    repair_vat_number,
    siret_is_valid,
)
from socratext.fields.rows import build_rows, page_rows
from socratext.labels import OTHER

# ----------------------------------------------------------------------------------------- keywords

TOTAL_KW = re.compile(
    r"\bTOTAL\b|\bTOTA[l1I]\b|\bA PAYER\b|\bMONTANT DU\b|\bMONTANT TTC\b|\bNET A PAYER\b|\bAMOUNT DUE\b|"
    r"\bTOTAL DUE\b|\bDUE\b|\bGRAND TOTAL\b|^\W*NETT?\b|\bTTC\b|\bA REGLER\b|\bTOTAL A PAYER\b|\bSOMME DUE\b"
)
STRONG_TOTAL_KW = re.compile(
    r"A PAYER|MONTANT DU|ROUNDED|ROUNDING ADJ|\bNETT? TOTAL|GRAND TOTAL|AMOUNT DUE|TOTAL DUE|A REGLER|"
    r"TOTAL TTC|TOTAL \(?INCL|TOTAL PAYABLE|TOTAL EUR|TOTAL AMOUNT|SOMME DUE"
)
NOT_TOTAL_KW = re.compile(
    r"SOUS[- ]?TOTA|S/TOTAL|S-TOTAL|SUB[- ]?TOTAL|STOTAL|TOTAL\s*H\.?T|\bHT\b|\bH\.T\b|TOTAL\s*T\.?V\.?A|"
    r"T\.?V\.?A\.?\s*TOTAL|TOTAL\s*(?:QTY|QTE|QUANTITY|ITEMS?|ARTICLES?|ART|PCS|UNITS?|POINTS?|REMISES?|"
    r"ECONOMIES?|DISCOUNTS?|SAVINGS?|GST|TAX|EXCL|SST)|NB\.? ?ART|TOTAL INCLUDES|INCLUDED IN TOTAL|"
    r"EXCLUDING|\bEXCL\b|\bINCLUDED\b|\bRENDU\b|\bCHANGE\b|\bTENDERED\b|\bCASH\b|\bESPECES\b|\bMONNAIE\b|\bPAID\b|"
    r"\bREMISE\b|\bFIDELITE\b|\bCAGNOTTE\b|\bPOINTS?\b"
)
VAT_TOTAL_KW = re.compile(
    r"TOTAL\s*T\.?V\.?A|T\.?V\.?A\.?\s*TOTAL|MONTANT\s*T\.?V\.?A|DONT\s*T\.?V\.?A|TOTAL\s*(?:GST|TAX|SST)|"
    r"(?:GST|SST|TAX)\s*(?:TOTAL|PAYABLE|AMOUNT)|TOTAL INCLUDES .*GST|GST .*INCLUDED|INCLUDED GST|TOTAL TAXES"
)
VAT_KW = re.compile(r"\bT\.?V\.?A\b|\bGST\b|\bSST\b|\bTAUX\b|\bTAX\b|\bHT\b|\bTTC\b")
DATE_KW = re.compile(r"\bDATE\b|\bLE\b|\bDU\b|\bDATED\b")
SKIP_HEADER = re.compile(
    r"TICKET|BIENVENUE|WELCOME|\bPROVISOIRE\b|\bTEL\b|\bTEL\.|T[EÉ]L[EÉ]PHONE|PHONE|\bFAX\b|CAISSE|DUPLICATA|FACTURE|"
    r"INVOICE|RECEIPT|\bRECU\b|\bMERCI\b|THANK|SIRET|\bSIREN\b|\bTVA\b|\bRCS\b|\bNAF\b|\bAPE\b|\bGST\b|"
    r"CO[- .]?REG|\bREG\b|COMPANY NO|ROC NO|WWW\.|HTTP|@|\bCOPY\b|\bORIGINAL\b|CLIENT|\bVENDEUR\b|"
    r"^\W*(?:CO\.?\s*NO\.?|ROC|COMPANY)?[\s.:]*\(?[A-Z]{0,2}\d{3,}[\s-]*[A-Z]?\)?\W*$|"
    r"\bHOTE\b|\bSERVEUR\b|\bTABLE\s*(?:N\W*)?\d|\bCOUVERTS?\b|FORMERLY|LICENSEE|^\W*[A-Z]?\W*$|BONJOUR|\bOPEN\b|"
    r"\bOUVERT\b|HORAIRES|CAPITAL|\bDU LUNDI\b|MAGASIN\s*N|\bSTORE\s*#|VOTRE\b|\bMAGASIN\b\s*:|"
    # a receipt's closing lines, which some shops print above their name
    r"\bPLEASE\b|\bVISIT US\b|\bCOME AGAIN\b|REFUNDABLE|EXCHANGEABLE|RETURNABLE|\bGOODS SOLD\b|"
    r"\bSHOPPING WITH\b|\bFOR SHOPPING\b"
)
# What a company row says when the shop's own name is on the row above: legal forms and trades only.
GENERIC_NAME = re.compile(
    r"(?:\W|\bSDN\b|\bBHD\b|\bS/B\b|\bPLT\b|\(M\)|\bRESTAURANTS?\b|\bRESTORAN\b|\bENTERPRISES?\b|"
    r"\bTRADING\b|\bHARDWARE\b|\bSTATIONERY\b|\bBOOKSTORES?\b|\bMARKETING\b|\bSERVICES?\b|"
    r"\bINDUSTRIES\b|\bHOLDINGS?\b|\bINTERNATIONAL\b|\bGROUP\b|\bCO\b|\bCOMPANY\b|\bAND\b)*"
)
COMPANY_KW = re.compile(r"\bSDN\.?\s*B|\bBHD\b|\bS/B\b|\bENTERPRISE\b|\bTRADING\b|\bPLT\b")
# (Malaysian company names carry their legal form; a French SAS/SARL line is the operator, not the shop.)
STREET_KW = re.compile(
    r"\b(?:RUE|AVENUE|AV|BOULEVARD|BD|BLD|PLACE|PL|QUAI|ROUTE|RTE|CHEMIN|CHE|ALLEE|COURS|IMPASSE|"
    r"ZAC|ZI|ZA|ZONE|CENTRE COMMERCIAL|C\.?C|GALERIE|PARC|CHAUSSEE|FAUBOURG|FBG|LIEU[- ]DIT|"
    r"LOT|JALAN|JLN|JL|NO|TAMAN|LORONG|KAWASAN|BANGUNAN|LEVEL|BLOCK|BLOK|WISMA|PLAZA|MENARA|PERSIARAN|"
    r"LEBUH|BATU|KM|KG|KAMPUNG|SEKSYEN|BANDAR|PUSAT|INDUSTRIAL|PERINDUSTRIAN|SUITE|FLOOR|FLR|TINGKAT|UNIT|"
    r"BLK|MALL|SHOPPING CENTRE|CENTRE|SECTION|TOWER)\b\.?"
)
STREET_NUMBER = re.compile(r"^\s*\d{1,4}\s?(?:BIS|TER|,)?\s+[A-Z]")
# five digits, not glued to a letter or another number (`A03096` is a receipt code, not a postcode)
POSTCODE = re.compile(r"(?<![\w.,/-])\d{5}(?![\d.,/]\d|\d)")
POSTCODE_CITY = re.compile(r"(?<![\d.,/-])(?:F-)?\d{5}\s+(?:CEDEX\s)?[A-Z][A-Z'-]+")
MY_STATES = re.compile(
    r"^(?:\W*(?:SELANGOR|JOHOR|KUALA LUMPUR|W\.?P\.? KUALA LUMPUR|PULAU PINANG|PENANG|PERAK|KEDAH|KELANTAN|"
    r"TERENGGANU|PAHANG|MELAKA|MALACCA|NEGERI SEMBILAN|SABAH|SARAWAK|PERLIS|PUTRAJAYA|LABUAN|"
    r"SELANGOR DARUL EHSAN|JOHOR DARUL TAKZIM|DARUL EHSAN|DARUL TAKZIM|WILAYAH PERSEKUTUAN(?: KUALA LUMPUR)?|"
    r"D\.?\s?E|DARUL [A-Z']+|MALAYSIA|FRANCE)\W*)+$"
)
PHONE = re.compile(r"(?:\+?\d{1,3}[ .-]?)?(?:\(?0\d\)?[ .-]?)\d{2,4}(?:[ .-]?\d{2,4}){2,4}")
ITEM_HEADER = re.compile(r"DESIGNATION|\bQTE\b|\bQTY\b|\bPRIX\b|\bARTICLES?\b|\bDESCRIPTION\b|\bITEM\b|"
                         r"\bLIBELLE\b|\bAMOUNT\b|\bAMT\b|\bU/P\b|\bPRICE\b|\bMONTANT\b")
NOT_ITEM = re.compile(
    r"TOTAL|T\.?V\.?A|\bHT\b|\bTTC\b|\bGST\b|\bSST\b|\bTAX\b|\bCB\b|CARTE BANCAIRE|ESPECES|\bCASH\b|RENDU|"
    r"\bCHANGE\b|MONNAIE|\bPAYER\b|\bVISA\b|ROUNDING|ARRONDI|\bTENDERED\b|PAYMENT|PAIEMENT|\bSIRET\b|"
    r"\bDATE\b|\bTEL\b|\bSOLDE\b|\bMERCI\b|^\W*NETT?\b|\bDUE\b|SANS CONTACT|\bARTICLES?\b\s*:"
)
LOYALTY = re.compile(r"FIDELITE|LOYALTY|MEMBER|\bCLUB\b|POINTS|CAGNOTTE")
AMOUNT_ONLY = re.compile(r"[^A-Z]*(?:RM|EUR|MYR|E)?[^A-Z]*")
# A company's branch in brackets on the row under its name: words only (a number there is the company's)
BRANCH_ROW = re.compile(r"\(\s*[A-Z][A-Z .&'-]*\)")
# "KING'S CONFECTIONERY S/B 273500-U (KJ1)": a legal form, then the company number (and a branch code)
REG_AFTER_FORM = re.compile(r"(?:\bS/B|\bBHD|\bPLT)\.?(?=\s*,?\s*[A-Z]{0,2}\d{4,}[\s-]*[A-Z]\b)")
# The outlet printed under a chain's head-office address: its number and its name (`1245-DESA SRI HARTAMAS`)
OUTLET_ROW = re.compile(r"\d{3,5}-[A-Z][A-Z .'&-]*")
_CO_PREFIX = r"(?:CO\.?\s*(?:NO|REG)\.?\s*:?\s*)?[A-Z]{0,2}"  # an optional "Co No.:", a letter prefix
_CO_NO = r"\(\s*" + _CO_PREFIX  # the same after "("
# A row that starts with the company's registration number in brackets, printed under the name
# (`(0005583085-K)`, `(Co No. 315481-T) GST No. ...`)
REG_ROW = re.compile(_CO_NO + r"\d{4,}[\s-]*[A-Z]\s*\)")
# A row that says nothing but the registration number, bracketed or not (`002693074-K`)
REG_ONLY = re.compile(r"\(?\s*" + _CO_PREFIX + r"\d{4,}[\s-]*[A-Z]\s*\)?")
REG_NUMBER = re.compile(r"\s" + _CO_NO + r"\d{3,}[\s-]*[A-Z]?\s*\)\s*$")
CURRENCY_WORD = re.compile(r"^(?:€|EUR|EUROS?|RM|MYR|\$|USD|£|GBP|CHF)$")
QTY_X_PRICE = re.compile(
    r"(?<![\w.,])(?P<q>\d{1,4}(?:[.,]\d{1,3})?)\s?(?P<u>KG|G|L|PCS?|U)?\s?[X*×]\s?"
    r"(?P<p>(?:€|RM)?\s?\d+[.,]\d{2,3})(?:\s?(?:€|EUR))?(?:\s?/\s?(?:KG|L|U|PC))?"
)
PER_UNIT_PRICE = re.compile(r"(?:€|RM)?\s?\d+[.,]\d{2,3}\s?(?:€|EUR)?\s?/\s?(?:KG|L|U|PC)")
LEAD_QTY = re.compile(r"^(?P<q>\d{1,2}(?:[.,]\d{1,3}\s?(?:KG|G)?)?)\s?(?:[X×]\s|-\s)?(?=[A-Z(])")
# "5 *AVOCAT": the VAT code column (5 = 5.5 %) of a chain's till, before the starred article
LEAD_VAT_CODE = re.compile(r"^\d\s+(?=\*)")
VAT_CODE_RATE = re.compile(r"^\W*(?:TVA\s*)?(?:[A-F]|T\d|\d)?\W*\s(?P<r>\d{1,2}(?:[.,]\d{1,2})?)\s")
PCT = re.compile(r"(?<![\d.,])(?P<r>\d{1,2}(?:\s?[.,:]\s?\d{1,2})?)\s?%")  # OCR: "20, 00%", "5:5%"

SLIP_AMOUNT = re.compile(r"\bMONTANT\b\s*:?\s*(?:EUR|€)?\s*\d")  # the card slip's "MONTANT : 12,50 EUR"
# a row that only says the trade, printed over the shop's own name ("Boucherie" / "André")
TRADE_ROW = re.compile(
    r"(?:(?:BOUCHER|BOULANGER|PATISSER|CHARCUTER|FROMAGER|POISSONNER|EPICER|PHARMAC|LIBRAIR|BRASSER|"
    r"CREPER|PIZZER|TRAITEUR|PRIMEUR|RESTAURANT|CAFE|BISTRO|CAVE|HOTEL|MAISON|CHEZ)[A-Z]*\W*)+"
)
ARTICLES = frozenset({"LE", "LA", "LES", "L'", "THE", "AU", "AUX"})
SMALL_WORDS = frozenset({"de", "la", "du", "le", "les", "des", "et", "sur", "en", "au", "aux",
                         "sdn", "bhd", "plt"})  # "... (M) Sdn bhd": a legal form in lower case, not debris

P_STRONG, P_GOOD, P_WEAK = 0.9, 0.8, 0.6

ROUNDING_KW = re.compile(r"ROUNDING|ARRONDI|ROUNDED")
_Cand = tuple[int, str, int, list[int], float]  # total candidate: (priority, value, row, words, probability)


UNLABELLED = WordLabel(OTHER, 1.0)


class _Labeller:
    """Labels of one page, filled rule by rule; a word keeps the first label it is given."""

    def __init__(self, page: OcrPage, today: dt.date | None) -> None:
        self.page = page
        self.rows = page_rows(page)
        self.labels: list[WordLabel] = [UNLABELLED] * len(page.words)  # immutable: one shared value
        self.today = today or dt.date.today()
        self.amounts = [find_amounts(r.text) for r in self.rows]
        self.used_rows: set[int] = set()
        heights = sorted(w.box[3] - w.box[1] for w in page.words)
        self.median_height = heights[len(heights) // 2] if heights else 0

    def set(self, words: list[int], label: str, prob: float) -> None:
        for w in words:
            if self.labels[w].label == OTHER:
                self.labels[w] = WordLabel(label, prob)

    def free(self, words: list[int]) -> bool:
        return all(self.labels[w].label == OTHER for w in words)

    # ------------------------------------------------------------------ identifiers, date, time

    def identifiers(self) -> None:
        for r, row in enumerate(self.rows):
            siret_kw = bool(re.search(r"SIRE[TN]|\bSIR\b", row.folded))
            for m in re.finditer(r"(?<!\d)\d(?:[ .]?\d){13}(?!\d)", row.folded):
                if not siret_kw and len(find_amounts(m.group(0))) >= 2:
                    continue  # "120.58 12.06 132.64": a VAT line's amounts, whose digits pass Luhn by chance
                digits = re.sub(r"\D", "", m.group(0))
                if siret_is_valid(digits) or siret_kw:  # a misread one may be repaired from the VAT number
                    prob = (P_STRONG if siret_kw else P_WEAK) if siret_is_valid(digits) else P_WEAK
                    self.set(row.words_in(m.start(), m.end()), "siret", prob)
                    self.used_rows.add(r)
            for m in re.finditer(r"(?<![A-Z])(?:FR|[A-Z]{2})\s?[0-9A-Z]{2}\s?\d{3}\s?\d{3}\s?\d{3}(?!\d)",
                                 row.folded):
                keyword = bool(re.search(r"T\.?V\.?A|VAT|INTRA|\bTUA\b|\bIVA\b", row.folded))
                if parse_vat_number(m.group(0)):
                    self.set(row.words_in(m.start(), m.end()), "vat_number", P_STRONG if keyword else P_GOOD)
                    self.used_rows.add(r)
                elif keyword and repair_vat_number(m.group(0)):  # one digit misread (key and SIREN disagree)
                    self.set(row.words_in(m.start(), m.end()), "vat_number", P_WEAK)
                    self.used_rows.add(r)

    def date_time(self) -> None:
        best: tuple[float, int, int, int] | None = None  # (score, row, start, end)
        for r, row in enumerate(self.rows):
            for s, e, iso in find_dates(row.text):
                d = dt.date.fromisoformat(iso)
                if d < dt.date(2000, 1, 1):
                    continue  # "RUE DU 8 MAI 1945"
                future = d > self.today + dt.timedelta(days=1)  # implausible, yet better than nothing
                score = ((0.2 if future else 1.0) + (0.5 if DATE_KW.search(row.folded[:s]) else 0.0)
                         + (0.3 if find_times(row.text) else 0.0))
                if best is None or score > best[0]:
                    best = (score, r, s, e)
        if best is not None:
            _, r, s, e = best
            words = self.rows[r].words_in(s, e)
            if self.free(words):
                self.set(words, "date", P_STRONG if best[0] > 1.0 else 0.85)
        rows = ([best[1]] if best else []) + list(range(len(self.rows)))
        for r in rows:
            row = self.rows[r]
            for s, e, _ in find_times(row.text):
                words = row.words_in(s, e)
                if self.free(words):
                    self.set(words, "time", P_STRONG if best and r == best[1] else 0.75)
                    return

    # ------------------------------------------------------------------ totals and VAT

    def total(self) -> int | None:
        """Label the total; return its row (the end of the items region)."""
        cands: list[_Cand] = []
        for r, row in enumerate(self.rows):
            f = row.folded
            if not TOTAL_KW.search(f) or NOT_TOTAL_KW.search(f) or VAT_TOTAL_KW.search(f):
                continue
            strong = bool(STRONG_TOTAL_KW.search(f))
            kw_end = max(m.end() for m in TOTAL_KW.finditer(f))
            found = [a for a in find_amounts(row.text, space_groups=True) if a[0] >= kw_end - 1]
            if found:
                s, e, value = found[-1]
                # "TOTAL 10.94 0.66" (a tax summary) is less likely the amount due than "TOTAL 11.60"
                priority = (2 if strong else 1) - (1 if len(found) > 1 else 0)
                cands.append((priority, value, r, row.words_in(s, e), P_STRONG if priority > 0 else P_GOOD))
                continue
            # Label on this row, value on the next one (narrow receipts, SROIE two-column layouts) or just
            # above it.
            for r2 in (r + 1, r + 2, r - 1):
                if 0 <= r2 < len(self.rows) and AMOUNT_ONLY.fullmatch(self.rows[r2].folded):
                    nxt = find_amounts(self.rows[r2].text, space_groups=True)
                    if len(nxt) == 1:
                        s, e, value = nxt[0]
                        cands.append((2 if strong else 1, value, r2, self.rows[r2].words_in(s, e), 0.75))
                        break
        if not cands:
            return self._total_fallback()
        top = max(c[0] for c in cands)
        chosen = max((c for c in cands if c[0] == top), key=lambda c: (float(c[1]), c[2]))
        chosen = self._rounded(chosen)
        value_words = [w for w in chosen[3] if not self._currency_word(w)]
        self.set(value_words or chosen[3], "total", chosen[4])
        self._currency_near(chosen[2], P_GOOD)
        # the items end at the first row that reads like the total as much as the chosen one: a weaker
        # total row above it is a section's (`Total CHARCUTERIE 4,84`, then `Total EUR 12,90`)
        first_total_row = min(c[2] for c in cands if c[0] == top)
        return min(first_total_row, chosen[2])

    def _rounded(self, chosen: _Cand) -> _Cand:
        """The amount due is the rounded one: `TOTAL 60.31` / `ROUNDING ADJ -0.01` / `RM 60.30`, or a
        rounded-total row that names itself (`Total Sales RM 27.28` / `Rounding Adjustment RM 0.02` /
        `Rounding RM 27.30`, 99 Speedmart's layout: 2 of 57 held-out SROIE totals). An adjustment row's
        own amount is never the total; an amount more than 0.10 from the keyword total is no rounding.
        Where the rounded row is not that plain (a misread `RH 60.30`, `Totel Amt Peyable 8.50`, a
        quantity on it), the sum decides: `_rounded_by_sum`."""
        r = chosen[2]
        for k in range(r + 1, min(r + 3, len(self.rows))):
            if not ROUNDING_KW.search(self.rows[k].folded):
                continue
            for r2 in range(k, min(k + 3, len(self.rows))):
                f = self.rows[r2].folded
                found = find_amounts(self.rows[r2].text)
                rounded_row = bool(ROUNDING_KW.search(f)) and not re.search(r"ADJ", f)
                if r2 == k and not rounded_row:
                    continue  # the adjustment itself
                if len(found) == 1 and (AMOUNT_ONLY.fullmatch(f) or TOTAL_KW.search(f) or rounded_row):
                    s, e, value = found[0]
                    if abs(float(value) - float(chosen[1])) < 0.1:
                        return (chosen[0], value, r2, self.rows[r2].words_in(s, e), P_GOOD)
            return self._rounded_by_sum(chosen, k) or chosen
        return chosen

    def _rounded_by_sum(self, chosen: _Cand, k: int) -> _Cand | None:
        """The amount due below rounding row `k` found by arithmetic: the total plus or minus the
        adjustment printed on the rounding row (or on a row beside it, where the columns came apart:
        `Qty 8 0.02` / `Rounding`), a whole multiple of 5 cents (cash rounding), read on one of the
        next rows. The sum is the check that the amount is the total, whatever words surround it."""
        total = round(float(chosen[1]) * 100)
        adjustments: set[int] = set()
        for r in (k, k - 1, k + 1):
            if r == chosen[2] or not 0 <= r < len(self.rows):
                continue
            adjustments.update(c for _, _, v in find_amounts(self.rows[r].text)
                               if 0 < (c := abs(round(float(v) * 100))) < 10)
            if adjustments:
                break
        targets = {total + sign * a for a in adjustments for sign in (1, -1)}
        for r2 in range(k, min(k + 3, len(self.rows))):
            for s, e, value in reversed(find_amounts(self.rows[r2].text)):
                cents = round(float(value) * 100)
                if cents in targets and cents % 5 == 0:
                    return (chosen[0], value, r2, self.rows[r2].words_in(s, e), P_GOOD)
        return None

    def _total_fallback(self) -> int | None:
        """No TOTAL row: a SUB-TOTAL, else the largest amount that is not cash handed over or change."""
        for r, row in enumerate(self.rows):
            if not re.search(r"SOUS[- ]?TOTAL|SUB[- ]?TOTAL|S/TOTAL", row.folded):
                continue
            # read as the keyword totals are: `SUBTOTAL RM 20. 40` is 20.40 (a space after the point)
            if found := find_amounts(row.text, space_groups=True):
                s, e, value = found[-1]
                words = self._rounded((0, value, r, row.words_in(s, e), 0.5))[3]
                self.set(words, "total", 0.5)
                return r
        best: tuple[float, int, int, int] | None = None
        for r, found in enumerate(self.amounts):
            if LOYALTY.search(self.rows[r].folded) or re.search(r"RENDU|CHANGE|TENDERED|CASH|ESPECES|MONNAIE",
                                                                  self.rows[r].folded):
                continue
            for s, e, v in found:
                if best is None or float(v) > best[0]:
                    best = (float(v), r, s, e)
        if best is None:
            return None
        _, r, s, e = best
        self.set(self.rows[r].words_in(s, e), "total", 0.4)
        return r

    def _currency_word(self, w: int) -> bool:
        return bool(CURRENCY_WORD.match(fold(self.page.words[w].text).strip(".:")))

    def _currency_near(self, r: int, prob: float) -> None:
        row = self.rows[r]
        for w in row.words:
            if self._currency_word(w) and self.free([w]):
                self.set([w], "currency", prob)
                return

    def vat(self, total_row: int | None) -> None:
        for r, row in enumerate(self.rows):
            f = row.folded
            found = [a for a in find_amounts(row.text, space_groups=VAT_KW.search(f) is not None or
                                             PCT.search(f) is not None)
                     if self.free(row.words_in(a[0], a[1]))]
            if not found:
                continue
            pct = [m for m in PCT.finditer(f) if not any(s <= m.start() < e for s, e, _ in found)]
            if VAT_TOTAL_KW.search(f) and len(found) <= 2 and (not pct or re.search(r"TOTAL|INCLUDED", f)):
                s, e, _ = found[-1]
                self.set(row.words_in(s, e), "vat_total", P_GOOD)
                continue
            if pct and len(found) == 1 and re.search(r"T\.?V\.?A|GST|TAX", f):
                # "Dont TVA 5,5 % = 0,41": one rate and its VAT amount, no base
                rate = parse_rate(pct[0].group(0))
                if rate is not None:
                    self.set(row.words_in(pct[0].start(), pct[0].end()), "vat_rate", P_GOOD)
                    self.set(row.words_in(found[0][0], found[0][1]), "vat_amount", P_GOOD)
                    self.used_rows.add(r)
                continue
            rate_span = None
            if pct:
                rate_span = (pct[0].start(), pct[0].end(), parse_rate(pct[0].group(0)))
            else:
                # "T1 20,00 6,67 1,33 8,00", "A 5,5 10,00 0,55": a code then a bare rate then amounts
                m = VAT_CODE_RATE.match(f + " ")
                if m and len(found) >= 2 and (VAT_KW.search(f) or self._vat_header_above(r)):
                    rate_span = (m.start("r"), m.end("r"), parse_rate(m.group("r")))
            if rate_span is None or rate_span[2] is None or len(found) < 2:
                if VAT_KW.search(f) and re.search(r"\bT\.?V\.?A\b|\bGST\b|\bTAX\b", f) and len(found) == 1 \
                        and not TOTAL_KW.search(f.replace("TVA", "")) and not PCT.search(f):
                    s, e, _ = found[0]
                    self.set(row.words_in(s, e), "vat_total", P_WEAK)
                continue
            rate = rate_span[2]
            after = [a for a in found if a[0] >= rate_span[1]] or found
            base, amount = self._vat_pair(rate, after)
            if base is None and amount is None:
                continue
            self.set(row.words_in(rate_span[0], rate_span[1]), "vat_rate", P_GOOD)
            if base is not None:
                self.set(row.words_in(base[0], base[1]), "vat_base", P_GOOD)
            if amount is not None:
                self.set(row.words_in(amount[0], amount[1]), "vat_amount", P_GOOD)
            self.used_rows.add(r)

    def reconcile_total(self, total_row: int | None) -> None:
        """Check the labelled total against independent evidence printed elsewhere: the amount paid by
        card / cheque / voucher and the card slip's MONTANT equal the total, so does the VAT table's sum.
        An OCR misread (`242,12` for `242,72`) or a lost TOTAL amount is replaced by the amount that the
        evidence agrees on."""
        current = [i for i, lab in enumerate(self.labels) if lab.label == "total"]
        cur_value = self._value_of(current)
        evidence: dict[str, list[list[int]]] = {}
        for r in range(total_row if total_row is not None else 0, len(self.rows)):
            row = self.rows[r]
            f = row.folded
            method = find_payment_method(f)
            paid = method is not None and method[2] != "cash" and not LOYALTY.search(f)
            if not (paid or SLIP_AMOUNT.search(f)):
                continue
            for s, e, v in find_amounts(row.text, space_groups=True):
                words = row.words_in(s, e)
                if all(self.labels[w].label in (OTHER, "total") for w in words):
                    evidence.setdefault(v, []).append(words)
        vat_sum = self._vat_sum()
        if vat_sum is not None:
            evidence.setdefault(vat_sum, []).append([])
        if cur_value is not None and cur_value in evidence:
            return
        weak = not current or max(self.labels[i].probability for i in current) <= 0.5
        ranked = sorted(((len(ws), v) for v, ws in evidence.items() if any(ws)), reverse=True)
        if not ranked or ranked[0][0] < (1 if weak else 2):
            return
        value = ranked[0][1]
        words = next(ws for ws in evidence[value] if ws)
        for i in current:
            self.labels[i] = UNLABELLED
        self.set(words, "total", P_GOOD if len(evidence[value]) > 1 else P_WEAK)

    def _value_of(self, words: list[int]) -> str | None:
        if not words:
            return None
        found = find_amounts(" ".join(self.page.words[w].text for w in words), space_groups=True)
        return found[-1][2] if found else None

    def _vat_sum(self) -> str | None:
        """The total the VAT table implies: Σ (base + VAT) for bases printed excl. tax, Σ base for bases
        printed incl. tax (told apart by base × rate ≈ VAT)."""
        total = Decimal(0)
        seen = False
        for row in self.rows:
            parts: dict[str, str | None] = {}
            for w in row.words:
                lab = self.labels[w].label
                if lab in ("vat_rate", "vat_base", "vat_amount") and lab not in parts:
                    text = self.page.words[w].text
                    parts[lab] = parse_rate(text) if lab == "vat_rate" else self._value_of([w])
            if "vat_base" not in parts:
                continue
            base, amount, rate = parts.get("vat_base"), parts.get("vat_amount"), parts.get("vat_rate")
            if base is None or amount is None:
                return None
            seen = True
            b, a = Decimal(base), Decimal(amount)
            excl = rate is None or abs(b * Decimal(rate) / 100 - a) <= Decimal("0.02")
            total += b + (a if excl else 0)
        return f"{total:.2f}" if seen else None

    def _vat_header_above(self, r: int) -> bool:
        return any(VAT_KW.search(self.rows[k].folded) for k in range(max(0, r - 3), r))

    @staticmethod
    def _vat_pair(rate: str, found: list[tuple[int, int, str]],
                  ) -> tuple[tuple[int, int, str] | None, tuple[int, int, str] | None]:
        """Which of the row's amounts are the base and the VAT amount (base × rate ≈ amount)."""
        for i, b in enumerate(found):
            for a in found[i + 1:] + found[:i]:
                if a is not b and vat_line_consistent(rate, b[2], a[2]) and float(a[2]) < float(b[2]):
                    return b, a
        if len(found) >= 2 and float(found[1][2]) < float(found[0][2]):
            return found[0], found[1]
        if found:
            return found[0], None  # "20,00% 26,35 ?? 31,62": the VAT amount is unreadable, the TTC is not it
        return None, None

    # ------------------------------------------------------------------ header: merchant and address

    def header(self, limit_row: int) -> int:
        """Merchant name and address at the top; return the last header row."""
        top = min(limit_row, 12, len(self.rows))
        name_rows: list[int] = []
        address_start: int | None = None
        first_postcode = next((r for r in range(top) if POSTCODE.search(self.rows[r].folded)), top)
        # The company row among the first six rows that say something: a "THANK YOU" banner, a slogan
        # and logo debris above the name do not push it out of reach.
        said = [r for r in range(min(top, first_postcode)) if not self._trivial(r)][:6]
        company = [r for r in said if COMPANY_KW.search(self.rows[r].folded)
                   and not SKIP_HEADER.search(self.rows[r].folded)]
        candidates: list[int] = []
        for r in range(top):
            if self._trivial(r):
                continue
            f = fold(" ".join(self.page.words[w].text for w in self._trim_noise(self.rows[r].words)))
            if (STREET_NUMBER.match(f) and STREET_KW.search(f)) or POSTCODE_CITY.match(f.strip()):
                address_start = r  # the address starts here (and the name, if any, was above)
                break
            candidates.append(r)
        if company:
            name_rows = [company[0]]
        elif registered := [r for r in range(1, min(top, first_postcode))
                            if REG_ROW.match(self.rows[r].folded.strip())
                            and r - 1 in candidates and self._plain_name(r - 1)]:
            # the row the registration number is printed under names the company, whatever stands
            # above it (`Cashier [P.NISANTHI]`, a handwritten note read as `3180404 staff`)
            name_rows = [registered[0] - 1]
        elif candidates:
            # The shop name is usually the first line, printed larger; a larger line just below a small
            # header ("Votre magasin", a slogan) wins.
            first = candidates[0]
            tallest = max(candidates[:4], key=self._height)
            r = tallest if self._height(tallest) >= 1.3 * self._height(first) else first
            if r + 1 in candidates and self._repeats_fuller(r, r + 1):
                r += 1  # a logo "DIVAN" over the printed "LE DIVAN": the fuller row is the name
            name_rows = [r]
            if r - 1 in candidates and TRADE_ROW.fullmatch(self.rows[r - 1].folded.strip()):
                name_rows.insert(0, r - 1)  # "Boucherie" in small print over a large "andré"
            big = self._height(r) >= 1.3 * self.median_height
            nxt = r + 1
            if big and self._same_print_name(nxt, r, candidates):
                name_rows.append(nxt)  # "BIG" / "FERNAND": one name in large print over two lines
            elif (big and nxt in candidates and self.rows[nxt].text.strip().lower() in SMALL_WORDS
                  and self._same_print_name(nxt + 1, r, candidates)):
                name_rows += [nxt, nxt + 1]  # "L'ATELIER" / "des" / "MÉLANGES": joined by a small word
            elif (nxt + 1 < top and REG_ONLY.fullmatch(self.rows[nxt + 1].folded.strip())
                  and self._same_print_name(nxt, r, candidates)):
                name_rows.append(nxt)  # "RESTAURANT JIAWEI" / "JIAWEI HOUSE" / "002693074-K"
            address_start = None
        if not name_rows and address_start is None:
            return -1
        first = name_rows[0] if name_rows else 0
        if name_rows and company and self._name_continues_above(first):
            name_rows.insert(0, first - 1)  # "MPH BOOKSTORES" / "SDN BHD", "LIAN CHI" / "RESTAURANT SDN BHD"
        last_name = name_rows[-1] if name_rows else -1
        if (name_rows and "(" in self.rows[last_name].folded.rsplit(")", 1)[-1]
                and last_name + 1 < top and ")" in self.rows[last_name + 1].folded
                and not self._addressy(last_name + 1) and not self._trivial(last_name + 1)):
            name_rows.append(last_name + 1)  # "KEDAI ENTERPRISE (SETIA" / "ALAM)": the bracket closes below
        elif (name_rows and company and last_name + 1 < top
              and BRANCH_ROW.fullmatch(self.rows[last_name + 1].folded.strip())):
            name_rows.append(last_name + 1)  # "CHECKERS ... SDN BHD" / "(JALAN KLANG LAMA)": the branch
        for r in name_rows:
            row = self.rows[r]
            words = row.words
            m = REG_NUMBER.search(row.folded)
            if m and m.start() > 0:  # "99 SPEED MART S/B (519537-X)": the company number is not the name
                words = row.words_in(0, m.start())
            elif after_form := REG_AFTER_FORM.search(row.folded):
                words = row.words_in(0, after_form.end())
            large = set(self._large_print(r))
            self.set(self._trim_noise([w for w in words if w in large]), "merchant_name", P_GOOD)
        last = name_rows[-1] if name_rows else address_start - 1
        addr: list[int] = []
        saw_postcode = False
        for r in range(last + 1, len(self.rows)):
            # six rows from the name, or from the address's first row once there is one: a company
            # number and a "formerly known as" row can stand between the two
            if r > (addr[0] + 5 if addr else last + 6):
                break
            f = self.rows[r].folded
            if saw_postcode:
                if MY_STATES.match(f) and not MY_STATES.match(self.rows[r - 1].folded):  # one state row
                    addr.append(r)
                    continue
                if OUTLET_ROW.fullmatch(f.strip()) or BRANCH_ROW.fullmatch(f.strip()):
                    addr.append(r)  # the outlet: `1245-DESA SRI HARTAMAS`, `(MR DIY TESCO TERBAU)`
                break
            has_date = any(iso >= "2000" for _, _, iso in find_dates(f))
            if (SKIP_HEADER.search(f) or PHONE.fullmatch(f.strip()) or has_date
                    or (self.amounts[r] and not STREET_KW.search(f))):
                if addr:
                    break
                continue
            if POSTCODE_CITY.search(f):
                addr.append(r)
                saw_postcode = True
                continue
            if self._addressy(r) or (addr and not re.search(r"[a-z]", self.rows[r].text[:1])):
                addr.append(r)
                continue
            if addr:
                break
        prob = P_GOOD if saw_postcode else P_WEAK
        for r in addr:
            self.set(self._trim_noise(self.rows[r].words), "merchant_address", prob)
        return max([last, *addr])

    def _name_continues_above(self, r: int) -> bool:
        """Is company row `r` the second half of a name printed over two rows? It is when all it says
        is a legal form and a trade (`SDN BHD`, `RESTAURANT SDN BHD`, `ENTERPRISE (SETIA`), and the row
        above is a plain line in the same print size (not an address, a phone, a header word)."""
        if r == 0 or self._trivial(r - 1) or self._addressy(r - 1):
            return False
        bare = re.sub(r"\([^)]*\)?", " ", self.rows[r].folded)  # "(SETIA ALAM)", an unclosed "(SETIA"
        if not GENERIC_NAME.fullmatch(bare):
            return False
        return self._height(r - 1) >= 0.8 * self._height(r) or len(re.sub(r"\W", "", bare)) < 8

    def _trim_noise(self, words: list[int]) -> list[int]:
        """Drop OCR debris at the ends of a header row (`ei 103 BIS IMPASSE`, `Rue de la Gare oes`):
        short lower-case tokens or punctuation that no street or shop name ends with."""
        def noise(w: int) -> bool:
            t = self.page.words[w].text
            return (not re.search(r"\w", t)) or (len(t) <= 3 and t.isalpha() and t.islower()
                                                  and t not in SMALL_WORDS)
        out = list(words)
        while len(out) > 1 and noise(out[0]):
            out.pop(0)
        while len(out) > 1 and noise(out[-1]):
            out.pop()
        return out

    def _large_print(self, r: int) -> list[int]:
        """Row `r`'s words without those at its ends printed at less than half its largest word's
        height: a tagline or a label printed small beside a logo-sized name (`NATURALIA  Soyez libre
        de ...`) is not part of the name."""
        words = list(self.rows[r].words)
        tallest = max(map(self._word_height, words), default=0)
        while len(words) > 1 and self._word_height(words[0]) < 0.5 * tallest:
            words.pop(0)
        while len(words) > 1 and self._word_height(words[-1]) < 0.5 * tallest:
            words.pop()
        return words

    def _trivial(self, r: int) -> bool:
        f = self.rows[r].folded
        letters = re.sub(r"[^A-Z]", "", f)
        if not letters or len(re.sub(r"[^A-Z0-9]", "", f)) < 3 or SKIP_HEADER.search(f):
            return True
        if find_dates(f) or find_times(f) or self.amounts[r]:
            return True
        if PHONE.search(f) and len(letters) < 8:
            return True
        return False

    def _plain_name(self, r: int) -> bool:
        """Row `r` reads like a name: words, no digits, at least one of three letters or more."""
        f = self.rows[r].folded
        return not re.search(r"\d", f) and bool(re.search(r"[A-Z]{3}", f)) and not SKIP_HEADER.search(f)

    def _same_print_name(self, k: int, r: int, candidates: list[int]) -> bool:
        """Does row `k` go on name row `r`: a plain line (no digits, no address) in about its print?"""
        return (k in candidates and not self._addressy(k) and not re.search(r"\d", self.rows[k].folded)
                and self._height(k) >= 0.8 * self._height(r))

    def _repeats_fuller(self, r: int, k: int) -> bool:
        """Is row `k` row `r` with its article (a logo's `DIVAN` over the printed `LE DIVAN`)? Only an
        article: `market` over `MARKET DE MONTROUGE` is the name over its branch."""
        short, full = self.rows[r].folded.split(), self.rows[k].folded.split()
        return len(full) > len(short) and full[-len(short):] == short and all(
            w in ARTICLES for w in full[:-len(short)])

    def _addressy(self, r: int) -> bool:
        f = self.rows[r].folded
        return bool(STREET_KW.search(f) or POSTCODE.search(f) or STREET_NUMBER.match(f))

    def _word_height(self, w: int) -> int:
        box = self.page.words[w].box
        return box[3] - box[1]

    def _height(self, r: int) -> float:
        hs = [self._word_height(w) for w in self.rows[r].words]
        return median(hs) if hs else 0.0

    # ------------------------------------------------------------------ items, payment, currency

    def items(self, start: int, end: int) -> None:
        first_amount = next((r for r in range(start + 1, end) if self.amounts[r]), end)
        for r in range(start + 1, first_amount):
            if ITEM_HEADER.search(self.rows[r].folded):
                start = r  # the column header "QTE DESIGNATION PRIX"
        pending_name: int | None = None
        for r in range(start + 1, end):
            row = self.rows[r]
            f = row.folded
            if r in self.used_rows or not self.free(row.words) and not self.amounts[r]:
                pending_name = None
                continue
            if NOT_ITEM.search(f):
                pending_name = None
                continue
            found = [a for a in self.amounts[r] if self.free(row.words_in(a[0], a[1]))]
            if not found:
                letters = re.sub(r"[^A-Z]", "", f)
                pending_name = r if len(letters) >= 2 and self.free(row.words) else None
                continue
            qty_words: list[int] = []
            unit: tuple[int, int] | None = None
            name_start = 0
            if len(found) >= 2 and f[:found[0][0]].strip() == "" and re.search(r"[A-Z]{2}", f[found[0][1]:]):
                # "1,00 MENU ENFANT 11,35": a quantity printed like an amount, before the name
                qty_words = row.words_in(found[0][0], found[0][1])
                name_start = found[0][1]
                found = found[1:]
            elif len(found) >= 3 and item_consistent(found[-3][2], found[-2][2], found[-1][2]):
                # "COCA COLA 1,5L   2.00   2.00   4.00": quantity, unit price and total in columns
                qty_words = row.words_in(found[-3][0], found[-3][1])
                found = found[:-3] + found[-2:]
            name_end = found[0][0]
            m = QTY_X_PRICE.search(f) if not qty_words else None
            if m:
                qty_words = row.words_in(m.start("q"), m.end("u") if m["u"] else m.end("q"))
                unit = (m.start("p"), m.end("p"))
                name_end = min(name_end, m.start())
            total = found[-1]
            if unit is None and len(found) >= 2:
                unit = (found[-2][0], found[-2][1])
            if unit is not None and total[0] < unit[1]:
                total = None  # the only amount is the unit price of "2 x 1,25"
            if code := LEAD_VAT_CODE.match(f):
                name_start = max(name_start, code.end())
            priced = set(row.words_in(*unit)) if unit is not None else set()  # "(3.50)": one word, brackets
            name_words = [w for w in row.words_in(name_start, name_end)
                          if w not in qty_words and w not in priced]
            lead = LEAD_QTY.match(f) if not code else None
            if lead and not qty_words and name_words:
                q = row.words_in(lead.start("q"), lead.end("q"))
                if q and parse_quantity(" ".join(self.page.words[w].text for w in q)):
                    qty_words = q
                    name_words = [w for w in name_words if w not in q]
                    while name_words and fold(self.page.words[name_words[0]].text) in ("X", "*"):
                        qty_words.append(name_words.pop(0))
            if not qty_words and unit is not None and name_words:
                # column layout "CARRELAGE SOL   1   34,49   34,49": a bare count right before the prices
                last = self.page.words[name_words[-1]].text
                if re.fullmatch(r"\d{1,3}(?:[.,]\d{1,3})?", last) and len(name_words) > 1:
                    qty_words = [name_words.pop()]
                # "2 25 CL WARSTEINER (3.50) 7.00": a leading count that the prices confirm (2 x 3.50)
                elif (len(name_words) > 1 and total is not None
                      and re.fullmatch(r"\d{1,3}", first := self.page.words[name_words[0]].text)
                      and item_consistent(first, parse_amount(f[unit[0]:unit[1]]), total[2])):
                    qty_words = [name_words.pop(0)]
            name_words = [w for w in name_words if re.search(r"\w", self.page.words[w].text)]
            name_text = fold(" ".join(self.page.words[w].text for w in name_words))
            unit_words: list[int] = []
            if unit is None and PER_UNIT_PRICE.fullmatch(name_text.strip()):
                # "0,274kg 2,99EUR/kg 0,82": the price per kilo, not a name (that is on the row above)
                unit_words, name_words, name_text = name_words, [], ""
            has_name = bool(re.search(r"[A-Z]{2}", name_text))
            if not has_name:
                if pending_name is None:
                    continue
                self.set(self.rows[pending_name].words, "item_name", P_WEAK)
                name_words = []
            else:
                self.set(name_words, "item_name", P_WEAK)
            pending_name = None
            self.set(qty_words, "item_quantity", P_WEAK)
            if unit is not None:
                unit_words = row.words_in(*unit)
            self.set(unit_words, "item_unit_price", P_WEAK)
            if total is not None:
                self.set(row.words_in(total[0], total[1]), "item_total_price", P_WEAK)

    def payment(self, total_row: int | None) -> None:
        start = total_row if total_row is not None else 0
        for r in range(start, len(self.rows)):
            row = self.rows[r]
            f = row.folded
            found = find_payment_method(f)
            if LOYALTY.search(f) or found is None:
                continue
            words = [w for w in row.words_in(found[0], found[1]) if self.free([w])]
            if words:
                self.set(words, "payment_method", P_GOOD)
                return

    def currency(self) -> None:
        if any(lab.label == "currency" for lab in self.labels):
            return
        for r, row in enumerate(self.rows):
            if self.amounts[r]:
                for w in row.words:
                    text = fold(self.page.words[w].text).strip(".:")
                    if CURRENCY_WORD.match(text) and parse_currency(text) and self.free([w]):
                        self.set([w], "currency", P_WEAK)
                        return

    def run(self) -> list[WordLabel]:
        if not self.rows:
            return self.labels
        self.identifiers()
        self.date_time()
        total_row = self.total()
        self.vat(total_row)
        self.reconcile_total(total_row)
        end = total_row if total_row is not None else len(self.rows)
        header_end = self.header(end)
        self.items(header_end, end)
        self.payment(total_row)
        self.currency()
        return self.labels


def label_page(page: OcrPage, today: dt.date | None = None) -> list[WordLabel]:
    """One `WordLabel` per word of `page` (pure function of the OCR words and their boxes)."""
    return _Labeller(page, today).run()


class RulesExtractor:
    """The `Extractor` made of keyword/regex/position rules (no model, no image needed)."""

    name = "rules"
    uses_images = False
    takes_rule_labels = True  # `label(..., rule_labels=)`: pages already labelled by these rules
    # 2: rounded-total rows that name themselves (`_Labeller._rounded`); 3: misread SIRET (after a SIRET
    # keyword) and VAT numbers with one wrong digit are labelled, for assembly to repair
    version = "3"

    def __init__(self, today: dt.date | None = None) -> None:
        self.today = today

    def label(self, pages: list[OcrPage], images: list[Image.Image | None] | None = None,
              rule_labels: Sequence[Sequence[WordLabel] | None] | None = None) -> list[list[WordLabel]]:
        """`rule_labels[i]`: page i's labels by these very rules, computed upstream (the OCR stage carries
        them in its event, see `streams.events`), used as they are; None where a page has none. Rules
        pinned to another day (`today`) label every page themselves."""
        if rule_labels is None or self.today is not None:
            return [label_page(p, self.today) for p in pages]
        return [label_page(p) if given is None else list(given)
                for p, given in zip(pages, rule_labels, strict=True)]


def rules_id() -> str:
    """These rules' name and version, `rules-<version>`: what a hinted model's config records and what an
    OCR event's `rule_labels` say they came from (here, not in `socratext.model`, whose import brings in
    torch: the OCR worker names its rules without it)."""
    return f"{RulesExtractor.name}-{RulesExtractor.version}"


__all__ = ["RulesExtractor", "label_page", "build_rows", "rules_id"]
