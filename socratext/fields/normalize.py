"""Pure normalisers: receipt text in, contract-normalised string out (or None when it is not such a value).

Receipts print the same value in many ways (`1 234,56 €`, `EUR 12.50`, `3,00-`, `25 nov. 2026`,
`14h32`...). Every stage that turns words into fields (the rules extractor, field assembly, the
evaluation) goes through these functions, so a format is taught once and the output contract
(amounts `"1234.56"`, dates `YYYY-MM-DD`, times `HH:MM`, rates `"20.0"`) holds everywhere.
The `find_*` helpers search a longer text (an OCR line) and return character spans, which is what the
rules extractor needs to map a match back to the words it covers.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from socratext.privacy import luhn_ok  # one mod-10 check for card numbers and SIREN/SIRET

# --------------------------------------------------------------------------- text helpers


def _build_fold_table() -> dict[int, str]:
    """One-to-one accent folding (é → e, Û → U) so that character offsets survive the folding."""
    table: dict[int, str] = {}
    for cp in range(0xC0, 0x250):
        base = unicodedata.normalize("NFKD", chr(cp))[:1]
        if base and base.isascii() and base.isalpha() and base != chr(cp):
            table[cp] = base
    table.update({0x2019: "'", 0x2018: "'", 0xA0: " ", 0x202F: " ", 0x2009: " ", 0x2212: "-"})
    return table


_FOLD = _build_fold_table()


def fold(text: str) -> str:
    """Upper-case, accent-free copy of `text` with the same length (offsets stay valid)."""
    return text.translate(_FOLD).upper()


# --------------------------------------------------------------------------- amounts

_CUR_TOKENS = r"(?:€|EUR(?:OS?)?|E|RM|MYR|\$|USD|US\$|£|GBP|CHF)"
_AMOUNT_CORE = re.compile(
    r"""^(?P<int>\d{1,3}(?:(?P<th>[ .,'])\d{3})(?:(?P=th)\d{3})*|\d+)
        (?:(?P<dec>[.,])(?P<frac>\d{1,2}))?$""",
    re.X,
)
# 12€50, and the OCR's "26, 80" and "20. 40" (a space read after the decimal separator)
_SPLIT_EURO = re.compile(r"^(?P<int>\d+)\s*(?:€|EUR|[.,]\s)\s*(?P<frac>\d{2})$")
_PREFIX_CUR = re.compile(rf"^{_CUR_TOKENS}\s*")
_SUFFIX_CUR = re.compile(rf"\s*{_CUR_TOKENS}$")


def _fmt2(value: Decimal) -> str:
    q = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if q == 0:
        q = Decimal("0.00")
    return f"{q:.2f}"


def parse_amount(text: str, *, allow_integer: bool = False) -> str | None:
    """`"1 234,56 €"` → `"1234.56"`; None for dates, phone numbers, percentages and other non-amounts.

    Bare integers (`"12"`) are only accepted with a currency marker (`"12 €"`) or `allow_integer=True`
    (a word a model labelled `total`), because on a receipt a bare integer is usually a quantity or a code.
    """
    s = fold(text).strip()
    s = s.strip("*:=")
    s = s.strip()
    if not s or "%" in s or len(s) > 24:
        return None
    neg = False
    if s.startswith("(") and s.endswith(")"):
        neg, s = True, s[1:-1].strip()
    if s.endswith("-") and not s.endswith("--"):
        neg, s = True, s[:-1].strip()
    if s.startswith("-"):
        neg, s = not neg, s[1:].strip()
    had_currency = False
    m = _SPLIT_EURO.match(s)
    if m:
        value = Decimal(f"{m['int']}.{m['frac']}")
        return _fmt2(-value if neg else value)
    m = _PREFIX_CUR.match(s)
    if m and m.end() < len(s) and (s[m.end()].isdigit() or s[m.end()] in " -"):
        had_currency, s = True, s[m.end():].strip()
        if s.startswith("-"):
            neg, s = not neg, s[1:].strip()
    m = _SUFFIX_CUR.search(s)
    if m and m.start() > 0 and (s[m.start() - 1].isdigit() or s[m.start() - 1] == " " or m.group(0)[0] == " "
                                ):
        had_currency, s = True, s[: m.start()].strip()
        if s.endswith("-"):
            neg, s = True, s[:-1].strip()
    m = _AMOUNT_CORE.match(s)
    if not m:
        return None
    int_part, sep, dec, frac = m["int"], m["th"], m["dec"], m["frac"]
    if sep is not None and dec is not None and sep == dec:
        return None  # "1.234.56": the decimal separator cannot also group thousands
    if dec is None and sep in (".", ","):
        return None  # "1.234" / "1,234": thousands or three decimals, ambiguous
    if dec is None and not (had_currency or allow_integer):
        return None
    digits = int_part.replace(sep or "#", "")
    if len(digits) > 9 or (len(digits) > 1 and digits.startswith("0") and sep is None and dec is None):
        return None
    try:
        value = Decimal(f"{digits}.{frac or '0'}")
    except InvalidOperation:  # pragma: no cover - the regex only lets digits through
        return None
    return _fmt2(-value if neg else value)


# An amount inside a line: digits with a decimal part of exactly 2 digits (the receipt convention),
# optional thousands grouping, optional currency before/after and optional sign.
_FIND_AMOUNT = re.compile(
    rf"""(?<![\w.,/:-])
         (?:{_CUR_TOKENS}\s?)?-?\s?
         \d{{1,3}}(?:(?:\.\d{{3}})+,\d{{2}}|(?:,\d{{3}})+\.\d{{2}})
         (?:\s?(?:€|EUR(?:OS?)?|RM|\$|£))?-?
         (?![\w%/.,:]|\s?%|,\d|\.\d)""",
    re.X,
)
_FIND_AMOUNT_PLAIN = re.compile(
    rf"""(?<![\w.,/:-])(?:{_CUR_TOKENS}\s?)?-?\d+[.,]\d{{2}}(?:\s?(?:€|EUR|RM|\$|£))?-?(?![\w%/.,:]|\s?%)""",
    re.X,
)


_FIND_AMOUNT_SPACED = re.compile(
    r"(?<![\w.,/:-])-?\d{1,3}(?: \d{3})+,\d{2}(?:\s?(?:€|EUR))?-?(?![\w%/.,:]|\s?%)"
)


_FIND_AMOUNT_OCR_SPLIT = re.compile(r"(?<![\w.,/:-])\d{1,4}[.,] \d{2}(?:\s?(?:€|EUR))?(?![\w%/.,:]|\s?%)")


def find_amounts(text: str, *, space_groups: bool = False) -> list[tuple[int, int, str]]:
    """Every amount in a line as `(start, end, "12.50")`; percentages, dates and times are left out.

    `space_groups` also reads `1 234,56` as one amount and `26, 80` (a space the OCR put after the
    comma) as 26.80; it is off by default because in an item line `2 125,00` is more often a quantity
    and a price than a thousands group.
    """
    return list(_find_amounts(text, space_groups))


def clear_caches() -> None:
    """Forget the remembered parses: for benchmarks, whose later rounds would otherwise read the same
    receipts' lines from memory (the service never needs it: results depend on the text alone)."""
    _find_amounts.cache_clear()
    _find_dates.cache_clear()


@functools.lru_cache(maxsize=4096)
def _find_amounts(text: str, space_groups: bool) -> tuple[tuple[int, int, str], ...]:
    """`find_amounts`, remembered (a pure function of the text): the rules and field assembly read the
    same lines several times over (totals, VAT, items, reconciliation), ~55 calls per receipt for about
    half as many distinct lines."""
    folded = fold(text)
    out: list[tuple[int, int, str]] = []
    taken: list[tuple[int, int]] = []
    patterns = (_FIND_AMOUNT_SPACED, _FIND_AMOUNT_OCR_SPLIT) if space_groups else ()
    for rx in (*patterns, _FIND_AMOUNT, _FIND_AMOUNT_PLAIN):
        for m in rx.finditer(folded):
            if any(m.start() < e and s < m.end() for s, e in taken):
                continue
            value = parse_amount(m.group(0))
            if value is not None:
                out.append((m.start(), m.end(), value))
                taken.append((m.start(), m.end()))
    out.sort()
    return tuple(out)


# --------------------------------------------------------------------------- dates

_MONTHS: dict[str, int] = {}
for _num, _names in enumerate(
    (
        ("JANVIER", "JANV", "JAN", "JANUARY"),
        ("FEVRIER", "FEVR", "FEV", "FEB", "FEBRUARY", "FEBR"),
        ("MARS", "MAR", "MARCH"),
        ("AVRIL", "AVR", "APR", "APRIL"),
        ("MAI", "MAY"),
        ("JUIN", "JUN", "JUNE"),
        ("JUILLET", "JUIL", "JUL", "JULY"),
        ("AOUT", "AOU", "AUG", "AUGUST"),
        ("SEPTEMBRE", "SEPT", "SEP", "SEPTEMBER"),
        ("OCTOBRE", "OCT", "OCTOBER"),
        ("NOVEMBRE", "NOV", "NOVEMBER"),
        ("DECEMBRE", "DEC", "DECEMBER"),
    ),
    start=1,
):
    for _n in _names:
        _MONTHS[_n] = _num
_MONTH_RX = "|".join(sorted(_MONTHS, key=len, reverse=True))

_DATE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?<![\d.,/-])(?P<y>(?:19|20)\d\d)[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})"
                r"(?![\d/-]|[.,]\d)"), "ymd"),
    (re.compile(r"(?<![\d.,/-])(?P<d>\d{1,2})\s?(?P<s>[-/.])\s?(?P<m>\d{1,2})\s?(?P=s)\s?(?P<y>\d{4}|\d{2})"
                r"(?![\d/-]|[.,]\d)"), "dmy"),
    # "04/03/201815:41:52": a deep OCR drops the space between the date and the time
    (re.compile(r"(?<![\d.,/-])(?P<d>\d{1,2})(?P<s>[-/.])(?P<m>\d{1,2})(?P=s)(?P<y>(?:19|20)\d\d)"
                r"(?=[0-2]?\d:[0-5]\d)"), "dmy"),
    (re.compile(rf"(?<![\w.,/-])(?P<d>\d{{1,2}})(?:ER|E)?[\s./-]?(?P<mn>{_MONTH_RX})(?![A-Z])\.?[\s./-]?\s?"
                r"(?P<y>\d{4}|\d{2})(?![\d/-]|[.,]\d)"), "dMy"),
    (re.compile(rf"(?<![\w])(?P<mn>{_MONTH_RX})(?![A-Z])\.?\s?(?P<d>\d{{1,2}})(?:ST|ND|RD|TH)?,?\s(?P<y>\d{{4}})(?!\d)"),
     "Mdy"),
)


def _make_date(y: int, m: int, d: int, *, two_digit: bool) -> str | None:
    if two_digit:
        y += 2000
    if not 1900 <= y <= 2099:
        return None
    try:
        return dt.date(y, m, d).isoformat()
    except ValueError:
        return None


def find_dates(text: str) -> list[tuple[int, int, str]]:
    """Every calendar date in a line as `(start, end, "YYYY-MM-DD")` (day-first, month names FR/EN)."""
    return list(_find_dates(text))


@functools.lru_cache(maxsize=4096)
def _find_dates(text: str) -> tuple[tuple[int, int, str], ...]:
    """`find_dates`, remembered like `_find_amounts` (the rules look for dates on every row twice)."""
    folded = fold(text)
    out: list[tuple[int, int, str]] = []
    for rx, kind in _DATE_PATTERNS:
        for m in rx.finditer(folded):
            if any(m.start() < e and s < m.end() for s, e, _ in out):
                continue
            ys = m["y"]
            two = len(ys) == 2
            y = int(ys)
            mon = _MONTHS[m["mn"]] if "mn" in m.groupdict() and m["mn"] else int(m["m"])
            d = int(m["d"])
            iso = _make_date(y, mon, d, two_digit=two)
            if iso is None and kind == "dmy" and d <= 12 < mon:  # US month-first
                iso = _make_date(y, d, mon, two_digit=two)
            if iso is not None:
                out.append((m.start(), m.end(), iso))
    out.sort()
    return tuple(out)


_WEEKDAYS = ("LUNDI|MARDI|MERCREDI|JEUDI|VENDREDI|SAMEDI|DIMANCHE|LUN|MAR|MER|JEU|VEN|SAM|DIM|"
             "MONDAY|TUESDAY|WEDNESDAY|THURSDAY|FRIDAY|SATURDAY|SUNDAY|MON|TUE|WED|THU|FRI|SAT|SUN")
_DATE_NOISE = re.compile(rf"\b(?:DATE|LE|DU|LE|LA|LES|LES|LE|{_WEEKDAYS}|LE)\b\.?|[:,;()\[\]]|\bA\b|\bAT\b")


def parse_date(text: str) -> str | None:
    """`"25 nov. 2026"`, `"25/11/26"`, `"Nov 25, 2026"`, `"25/11/2026 14:32"` → `"2026-11-25"`.

    The text must be a date (optionally with a weekday, a `Date:` label and a time), not a line that
    merely contains one: `"Ticket 1234 25/11/2026"` gives None.
    """
    compact = re.sub(r"^\D*(\d{8})\D*$", r"\1", text.strip())
    if len(compact) == 8 and compact.isdigit():  # "20180304", "25032018": only when it is all there is
        return (_make_date(int(compact[:4]), int(compact[4:6]), int(compact[6:]), two_digit=False)
                or _make_date(int(compact[4:]), int(compact[2:4]), int(compact[:2]), two_digit=False))
    found = find_dates(text)
    if len(found) != 1:
        return None
    s, e, iso = found[0]
    rest = fold(text[:s] + " " + text[e:])
    for ts, te, _ in find_times(rest):
        rest = rest[:ts] + " " * (te - ts) + rest[te:]
    rest = _DATE_NOISE.sub(" ", rest)
    if re.search(r"\d", rest) or len(re.sub(r"\W", "", rest)) > 2:
        return None
    return iso


# --------------------------------------------------------------------------- times

_TIME_RX = re.compile(
    r"(?:(?<![\d.,:/])|(?<=[/.-][12][09]\d\d))(?P<h>\d{1,2})\s?(?P<sep>[:H])\s?(?P<m>\d{2})(?::(?P<s>\d{2}))?"
    r"(?:\s?(?P<ap>[AP])\.?M\.?\b)?(?![\d.,/]\d|\d)"
)


def find_times(text: str) -> list[tuple[int, int, str]]:
    """Every clock time in a line as `(start, end, "HH:MM")`."""
    out: list[tuple[int, int, str]] = []
    for m in _TIME_RX.finditer(fold(text)):
        h, mi = int(m["h"]), int(m["m"])
        if m["ap"]:
            if not 1 <= h <= 12:
                continue
            h = h % 12 + (12 if m["ap"] == "P" else 0)
        if h > 23 or mi > 59 or (m["s"] is not None and int(m["s"]) > 59):
            continue
        out.append((m.start(), m.end(), f"{h:02d}:{mi:02d}"))
    return out


def parse_time(text: str) -> str | None:
    """`"14h32"`, `"14:32:05"`, `"2:32 PM"` → `"14:32"`; None when the text is not just a time."""
    s = fold(text).strip().strip(".,;()")
    s = re.sub(r"^(?:HEURE|TIME|H)\s*:?\s*", "", s)
    found = find_times(s)
    if len(found) != 1 or found[0][0] != 0 or found[0][1] != len(s):
        return None
    return found[0][2]


# --------------------------------------------------------------------------- SIRET / VAT number


OCR_DIGITS = str.maketrans({"O": "0", "I": "1", "L": "1"})  # letters Tesseract reads for digits in numbers


def siret_is_valid(digits: str) -> bool:
    """A SIRET is 14 digits with a Luhn checksum (La Poste's establishments use a digit-sum rule)."""
    if len(digits) != 14 or not digits.isdigit():
        return False
    if digits.startswith("356000000"):
        return luhn_ok(digits) or sum(int(c) for c in digits) % 5 == 0
    return luhn_ok(digits)


# A company registration number printed after the name: "(519537-X)", "(CO. NO: 12345-A)", "1110644-W",
# glued or not ("S/B(587969-U)"); the OCR reads the dash as a middle dot now and then.
_TRAILING_REG_NUMBER = re.compile(
    r"\s*(?:\(\s*(?:CO\.?\s*(?:NO|REG)\.?\s*:?\s*)?[A-Z]{0,2}\d{3,}[\s.·-]*[A-Z]?\s*\)?"
    r"|(?<=\s)\d{4,8}\s?[-·.]\s?[A-Z])\W*$",
    re.IGNORECASE,
)
# "Dimiliki: BANH MI CAFE SDN BHD" (Malay: owned by), "Owned by ...", "Operated by ...": the owner's line
# names the company; the prefix is not part of it.
_OWNER_PREFIX = re.compile(r"^\W*(?:DIMILIKI(?:\s*OLEH)?|MILIK|OWNED\s+BY|OPERATED\s+BY)\s*:?\s*",
                           re.IGNORECASE)
_LEGAL_FORM_MISREADS = ((re.compile(r"(?<![\w/])5/B\b"), "S/B"),)
# A registration number before the address ("BR No.: (124525-H),") and a phone or fax after it
# ("... Kuala Lumpur T: 03-2093 7358 | F: 03-2093 7359", "..., 016-5498845") are not the address.
_LEADING_REG_NUMBER = re.compile(
    r"^\W*(?:BR|CO|ROC|REG|COMPANY|GST)\.?\s*(?:REG\.?\s*)?NO\.?\s*:?\s*\(?[A-Z]{0,2}\d{3,}[\s-]*[A-Z]?\)?[\s,;.]*",
    re.IGNORECASE,
)
_TRAILING_PHONE = re.compile(
    r"[\s,;|]*(?:\b(?:T|TEL|TELEPHONE|PHONE|F|FAX|H/P|HP)\b\s*[.:]?\s*)?\+?\(?\d{2,4}\)?[\s-]?\d{3,4}[\s-]?\d{3,4}"
    r"(?:\s*[|/,]\s*(?:\b(?:T|TEL|F|FAX)\b\s*[.:]?\s*)?\+?\(?\d{2,4}\)?[\s-]?\d{3,4}[\s-]?\d{3,4})*\W*$",
    re.IGNORECASE,
)


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


def strip_diacritics(text: str) -> str:
    """`Restäurants` → `Restaurants`: for scripts written without accents (Malay, English), where a deep
    OCR trained on many Latin languages puts them on worn thermal print."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


_WORD = re.compile(r"[\w']+")


def repair_o_zero(text: str) -> str:
    """The deep OCR confuses a narrow capital O and a zero; the word around one says which it is (pure).
    A word of capitals and zeros, two capitals at least, gets O's (`BL0NDE`, `EXPRESS0`, `D'0RANGE`); a
    word of digits and O's, two digits at least, gets zeros (`NO 29O`, a postcode `4O000`). Other words
    keep what was read (`X200`, `4X40`, `70%`, `Express0`, `A0`)."""
    def fix(m: re.Match[str]) -> str:
        word = m.group(0)
        core = word.replace("'", "")
        if "0" in core and re.fullmatch(r"[A-Z0]+", core) and sum(c.isalpha() for c in core) >= 2:
            return word.replace("0", "O")
        if "O" in core and re.fullmatch(r"[0-9O]+", core) and sum(c.isdigit() for c in core) >= 2:
            return word.replace("O", "0")
        return word
    return _WORD.sub(fix, text)


def clean_merchant_name(text: str) -> str:
    """The shop's name as printed, without what receipts print beside it: the company registration
    number, an "owned by" prefix, full-width brackets (NFKC), and the deep OCR's `5/B` for `S/B`.
    Pure text in, text out; an empty result means nothing of a name was left."""
    s = _collapse(text)
    s = _OWNER_PREFIX.sub("", s)
    for _ in range(2):  # "... S/B (519537-X) (GST)" rarely; twice is enough
        m = _TRAILING_REG_NUMBER.search(s)
        if not m or m.start() == 0:
            break
        s = s[:m.start()].rstrip()
    for pattern, repl in _LEGAL_FORM_MISREADS:
        s = pattern.sub(repl, s)
    return s


# A period between two parts of an address, after a word or a number (`TAMAN SEGAR. 56100 CHERAS`,
# `JALAN MANIS 7. TAMAN`): a comma misread (its tail is a few pixels). Not after an abbreviation of up to
# three letters (`NO. 5`, `AV. DE LA`, `JLN. BESAR`), which prints its period.
_PERIOD_FOR_COMMA = re.compile(r"(?:(?<=[^\W\d_]{4})|(?<=\d))\.(?= [^\W_])")


def clean_merchant_address(text: str) -> str:
    """The address without a registration number before it or phone/fax numbers after it (printed on
    the same line, so the row-level rules cannot leave them out). A postcode is never taken for a phone:
    a phone needs at least 8 digits in two or three groups."""
    s = _collapse(text)
    s = re.sub(r"(?<=\w)\.,(?=\s)", ",", s)  # "SEKSYEN 9., TAMAN": a row's final comma read as a period
    s = _PERIOD_FOR_COMMA.sub(",", s)
    s = _LEADING_REG_NUMBER.sub("", s)
    m = _TRAILING_PHONE.search(s)
    if m and m.start() > 0 and sum(c.isdigit() for c in m.group()) >= 8:
        s = s[:m.start()].rstrip(" ,;|")
    return s


def parse_siret(text: str) -> str | None:
    """`"732 829 320 00074"` → `"73282932000074"` when it passes the checksum, else None."""
    s = re.sub(r"^\s*(?:N°|NO|SIRET|SIRE T)\s*[:.\-]?\s*", "", fold(text).strip())
    if re.search(r"[^\d .\-OIL]", s) or sum(c.isdigit() for c in s) < 12:
        return None
    s = s.translate(OCR_DIGITS)  # a Luhn check guards the O→0 / I→1 repairs
    digits = re.sub(r"\D", "", s)
    return digits if siret_is_valid(digits) else None


def siren_is_valid(digits: str) -> bool:
    return len(digits) == 9 and digits.isdigit() and luhn_ok(digits)


def fr_vat_key(siren: str) -> str:
    """The 2-digit key of the French intra-EU VAT number `FR kk siren`."""
    return f"{(12 + 3 * (int(siren) % 97)) % 97:02d}"


_EU_VAT = re.compile(
    r"(?P<c>AT|BE|BG|CY|CZ|DE|DK|EE|EL|ES|FI|GB|HR|HU|IE|IT|LT|LU|LV|MT|NL|PL|PT|RO|SE|SI|SK|XI|CHE)"
    r"(?P<n>[0-9A-Z]{8,12})$"
)


def parse_vat_number(text: str) -> str | None:
    """`"FR 40 303 265 045"` → `"FR40303265045"` (key checked); other EU numbers accepted loosely."""
    s = re.sub(r"[\s.\-/]", "", fold(text))
    s = re.sub(r"^(?:N°|NO|NUMERO)?(?:TVA|VAT|TVAINTRACOM\w*|INTRACOM\w*|IDENT\w*)?[:]?", "", s)
    m = re.search(r"FR(?P<k>[0-9A-Z]{2})(?P<siren>[\dOIL]{9})$", s)
    if m and (m.start() == 0 or not s[m.start() - 1].isdigit()):
        key, siren = m["k"], m["siren"].translate(OCR_DIGITS)
        fixed_key = key.translate(OCR_DIGITS)
        if not siren.isdigit():
            return None
        if fixed_key.isdigit() and fixed_key == fr_vat_key(siren):
            return f"FR{fixed_key}{siren}"  # "FRO5..." read by the OCR for "FR05..."
        if key.isdigit() or fixed_key.isdigit():
            return None
        return f"FR{key}{siren}"
    m = _EU_VAT.search(s)
    if m and (m.start() == 0 or not s[m.start() - 1].isalnum()) and sum(c.isdigit() for c in m["n"]) >= 7:
        return m["c"] + m["n"]
    return None


def repair_vat_number(text: str) -> str | None:
    """A French VAT number whose key does not match its SIREN, with one digit misread: the unique number one
    digit away whose key matches a Luhn-valid SIREN (`"FR 25 652232249"` → `"FR25652232240"`), else None.

    Why this is safe without knowing how the OCR errs: the key (mod 97) and the SIREN's Luhn digit are two
    independent checks, so a wrong digit is repaired uniquely and correctly about nine times in ten, and a
    number with two wrong digits almost never passes both by chance. SIRET numbers carry only one check
    (Luhn): a misread SIRET has a dozen single-digit repairs, so it is not repaired on its own."""
    if parse_vat_number(text) is not None:
        return parse_vat_number(text)
    s = re.sub(r"[\s.\-/]", "", fold(text))
    m = re.search(r"FR(?P<k>[\dOIL]{2})(?P<siren>[\dOIL]{9})$", s)
    if not m or (m.start() > 0 and s[m.start() - 1].isdigit()):
        return None
    digits = (m["k"] + m["siren"]).translate(OCR_DIGITS)
    if not digits.isdigit():
        return None
    found = set()
    for i, c in enumerate(digits):
        for x in "0123456789":
            if x != c:
                cand = digits[:i] + x + digits[i + 1:]
                key, siren = cand[:2], cand[2:]
                if siren_is_valid(siren) and fr_vat_key(siren) == key:
                    found.add(cand)
    return f"FR{found.pop()}" if len(found) == 1 else None


# --------------------------------------------------------------------------- VAT rates, quantities


def parse_rate(text: str) -> str | None:
    """`"20%"`, `"T1 20,00%"`, `"5.5"` → `"20.0"`, `"5.5"` (one decimal); None outside 0–30 %."""
    s = fold(text).strip()
    s = re.sub(r"^(?:TVA|VAT|GST|SST|TX|TAUX|T\d|[A-F]\d?|\d\))\s*[:=]?\s*", "", s)
    s = re.sub(r"^(?:TVA|VAT|GST)\s*", "", s)
    if s.endswith("%"):
        s = re.sub(r"^(\d{1,2})\s?[.,:]\s?(\d{1,3})", r"\1.\2", s)  # OCR: "20, 00%", "5:5%"
    m = re.fullmatch(r"(?P<n>\d{1,2}(?:[.,]\d{1,3})?)\s*(?P<pct>%)?", s)
    if not m:
        return None
    value = Decimal(m["n"].replace(",", "."))
    if value > 30:
        return None
    return f"{value.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}"


def parse_quantity(text: str) -> str | None:
    """`"2"`, `"2 x"`, `"x2"`, `"QTE 3"` → `"2"`; weights keep their precision: `"0,350 kg"` → `"0.35"`."""
    s = fold(text).strip()
    s = re.sub(r"^(?:QTE|QTY|QT|Q)\s*[:.]?\s*", "", s)
    s = re.sub(r"^[X*]\s*|\s*[X*]$", "", s).strip()
    m = re.fullmatch(r"(?P<n>\d{1,4}(?:[.,]\d{1,3})?)\s*(?P<u>KG|G|L|CL|ML|PCS?|PCE|U|UN|UNITES?)?\.?", s)
    if not m:
        return None
    n = m["n"].replace(",", ".")
    value = Decimal(n)
    if value <= 0:
        return None
    if "." not in n:
        return str(int(n))
    return format(value.normalize(), "f") if value != value.to_integral_value() else str(int(value))


# --------------------------------------------------------------------------- currency, payment


_CURRENCY_RX: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"€|\bEUR\b|\bEUROS?\b|\d\s?EUR\b|\bEUR\d"), "EUR"),
    (re.compile(r"\bMYR\b|(?<![A-Z])RM(?=\s?\d|\b)"), "MYR"),
    (re.compile(r"£|\bGBP\b"), "GBP"),
    (re.compile(r"\bCHF\b"), "CHF"),
    (re.compile(r"\bUSD\b|US\$|\$"), "USD"),
)


def parse_currency(text: str) -> str | None:
    """The ISO code of the first currency marker in `text`: `€`/`EUR`/`euros` → `"EUR"`, `RM` → `"MYR"`."""
    s = fold(text)
    best: tuple[int, str] | None = None
    for rx, code in _CURRENCY_RX:
        m = rx.search(s)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), code)
    return best[1] if best else None


_PAYMENT_RX: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"TICKETS? ?RESTO|TITRES? ?RESTAURANT|CHEQUES? ?DEJEUNER|\bSWILE\b|\bTR\b|\bCTR\b|"
                r"\bUP DEJEUNER\b|\bEDENRED\b|\bLUNCHR\b|\bAPETIZ\b|\bTICKETS? ?REST\w*"), "meal_voucher"),
    (re.compile(r"\bCB\b|\bC\.B\.?|CARTE|\bVISA\b|MASTERCARD|MASTER CARD|\bMAESTRO\b|\bAMEX\b|"
                r"AMERICAN EXPRESS|SANS CONTACT|CONTACTLESS|CREDIT CARD|DEBIT CARD|\bCARD\b|\bPAYWAVE\b|"
                r"\bPAYPASS\b|\bEMV\b"), "card"),
    (re.compile(r"\bESPECES?\b|\bESP\b\.?|\bCASH\b|\bNUMERAIRE\b"), "cash"),
    (re.compile(r"\bCHEQUES?\b|\bCHQ\b|\bCHEQUE BANCAIRE\b"), "cheque"),
)


def find_payment_method(text: str) -> tuple[int, int, str] | None:
    """The payment keyword of a line as `(start, end, method)`; meal vouchers win over `CARTE TICKET
    RESTAURANT`'s "CARTE" and `CHEQUE DEJEUNER`'s "CHEQUE"."""
    s = fold(text)
    for rx, method in _PAYMENT_RX:
        m = rx.search(s)
        if m:
            return m.start(), m.end(), method
    return None


def parse_payment_method(text: str) -> str | None:
    """`"CB SANS CONTACT"` → `"card"`, `"ESPECES"` → `"cash"`, `"TICKET RESTAURANT"` → `"meal_voucher"`."""
    found = find_payment_method(text)
    return found[2] if found else None
