"""Payment card numbers (PANs) and secrets out of every output: OCR words, fields, events and logs.

A card receipt ("ticket CB") usually prints a truncated card number, but not always, and a photo of a
card slip or a hand-written note can carry the full one. Socratext has no business keeping it (PCI DSS:
a PAN that is stored or shown must be masked to at most the first 6 / last 4 digits), so every text
leaving the OCR stage, every output field and every log line goes through `mask_pans`.

What counts as a PAN, and why it is not "any Luhn-valid 13–19 digit number":

* French company numbers are Luhn-valid *by design*: a SIREN (9 digits) and a SIRET (14 digits = SIREN
  + establishment number) carry a Luhn key, and they are fields we extract. A plain "13–19 digits +
  Luhn" rule would mask every SIRET. So a PAN must also start with a card network's issuer prefix
  (IIN) *and* have a length that network issues (`CARD_BRANDS`): Visa 4 (13/16/19), Mastercard
  51–55 and 2221–2720 (16), Amex 34/37 (15), Diners 300–305/36/38/39 (14–19), Discover, JCB,
  UnionPay, Maestro, Mir.
* That still leaves one overlap: 14-digit Diners numbers (prefixes 30, 36, 38, 39) have the length of
  a SIRET, and a SIRET can start with those digits. Diners prints its 14-digit cards as 4-6-4, a SIRET
  is written contiguous or 3-3-3-5: a 14-digit number is masked only in the 4-6-4 grouping.
* Digits right after a SIRET / SIREN keyword are a company number, whatever they look like.
* Digit groups may be separated by one space or one dash (how cards are printed and OCR'd), and must
  have at least 3 digits (cards print 4-4-4-4, 4-6-5...; dashed dates and phone numbers have 2-digit
  groups); any other character (`,` `.` `/` `:`) ends the number, so amounts, dates and times are
  never touched.

Masking replaces each digit but the last four by `*` and keeps the separators, so the text keeps its
length ("4970 1012 3456 7890" → "**** **** **** 7890"): OCR words can be masked across a line and
keep their boxes. Known trade-off: a 13-digit EAN barcode starting with 4 (German products) that
happens to be Luhn-valid is masked like a 13-digit Visa; masking a non-PAN costs little, leaking a PAN
does not.

`RedactingFilter` applies the same masking to log records and also replaces the configured secret
values (S3 key, Kafka password), as a second line of defence behind code that never logs them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from socratext.document import OcrPage

__all__ = ["CARD_BRANDS", "RedactingFilter", "find_pans", "install_log_redaction", "is_pan", "luhn_ok",
           "mask_obj", "mask_page", "mask_pans", "mask_words", "secret_values"]

# (brand, IIN ranges as (low, high) prefixes of equal length, allowed lengths). Sources: the networks'
# published IIN ranges as summarised by ISO/IEC 7812 registries; only prefixes in use today.
CARD_BRANDS: tuple[tuple[str, tuple[tuple[str, str], ...], frozenset[int]], ...] = (
    ("visa", (("4", "4"),), frozenset({13, 16, 19})),
    ("mastercard", (("51", "55"), ("2221", "2720")), frozenset({16})),
    ("amex", (("34", "34"), ("37", "37")), frozenset({15})),
    ("diners", (("300", "305"), ("36", "36"), ("38", "39")), frozenset(range(14, 20))),
    ("discover", (("6011", "6011"), ("644", "649"), ("65", "65"), ("622126", "622925")),
     frozenset(range(16, 20))),
    ("jcb", (("3528", "3589"),), frozenset(range(16, 20))),
    ("unionpay", (("62", "62"), ("81", "81")), frozenset(range(16, 20))),
    ("maestro", (("50", "50"), ("56", "69")), frozenset(range(13, 20))),
    ("mir", (("2200", "2204"),), frozenset(range(16, 20))),
)
MIN_PAN, MAX_PAN = 13, 19
MIN_GROUP = 3
"""Cards print groups of 4 to 6 digits; dates and phone numbers have 2-digit groups ("22-01-1990
01-03-1999" is 16 digits, Luhn-valid and Mir-like: it must stay a pair of dates)."""
MASK = "*"

# Digit groups joined by a single space or dash; not glued to other digits.
_RUN = re.compile(r"(?<![0-9])[0-9]+(?:[ -][0-9]+)*(?![0-9])")
_GROUP = re.compile(r"[0-9]+")
_COMPANY_KEYWORD = re.compile(r"SIRE[TN]\s*(?:N\s*[°O.]?)?\s*[:.\-]?\s*$", re.IGNORECASE)
_DINERS_14 = (4, 6, 4)
_IIN_FIRST_DIGITS = frozenset(low[0] for _, ranges, _ in CARD_BRANDS for low, _ in ranges)


def luhn_ok(digits: str) -> bool:
    """The mod-10 check of ISO/IEC 7812 (cards) — also used by SIREN/SIRET, see the module doc."""
    if not digits.isdigit() or not digits.isascii():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_brand(digits: str) -> str | None:
    """The network whose IIN range and length `digits` fits, or None."""
    for brand, ranges, lengths in CARD_BRANDS:
        if len(digits) not in lengths:
            continue
        for low, high in ranges:
            if low <= digits[:len(low)] <= high:
                return brand
    return None


def is_pan(digits: str, groups: Sequence[int] | None = None) -> bool:
    """`digits` (digits only) is a card number: a known IIN and length, Luhn-valid, printed in groups of
    at least 3 digits, and — for 14 digits, a SIRET's length — in the Diners 4-6-4 grouping (`groups` =
    the digit count of each group as written; None = contiguous)."""
    if not MIN_PAN <= len(digits) <= MAX_PAN or card_brand(digits) is None or not luhn_ok(digits):
        return False
    if groups is not None and min(groups) < MIN_GROUP:
        return False
    return len(digits) != 14 or tuple(groups or (14,)) == _DINERS_14


def find_pans(text: str) -> list[tuple[int, int]]:
    """Character spans `(start, end)` of the card numbers in `text` (see the module doc for the rule).

    Within a run of digit groups, the card number may be any consecutive groups (a PAN followed by an
    expiry month, preceded by a quantity...): the leftmost start wins, then the longest valid end.
    """
    spans: list[tuple[int, int]] = []
    for run in _RUN.finditer(text):
        groups = [(m.start() + run.start(), m.end() + run.start()) for m in _GROUP.finditer(run.group())]
        company = bool(_COMPANY_KEYWORD.search(text[max(0, run.start() - 16):run.start()]))
        i = 1 if company else 0  # the first group belongs to the SIRET/SIREN
        while i < len(groups):
            found = None
            if text[groups[i][0]] in _IIN_FIRST_DIGITS:
                digits = ""
                sizes: list[int] = []
                for j in range(i, len(groups)):
                    s, e = groups[j]
                    if e - s < MIN_GROUP:
                        break  # no card number has a group this short (see MIN_GROUP)
                    digits += text[s:e]
                    sizes.append(e - s)
                    if len(digits) > MAX_PAN:
                        break
                    if len(digits) >= MIN_PAN and is_pan(digits, sizes if len(sizes) > 1 else None):
                        found = j
            if found is None:
                i += 1
                continue
            spans.append((groups[i][0], groups[found][1]))
            i = found + 1
    return spans


def _mask_span(chars: list[str], start: int, end: int) -> None:
    digit_pos = [k for k in range(start, end) if "0" <= chars[k] <= "9"]
    for k in digit_pos[:-4]:
        chars[k] = MASK


_DROP_DIGITS = {ord(d): None for d in "0123456789"}


def _ascii_digits(text: str) -> int:
    """How many of `text`'s characters are 0-9. Every output string of every receipt passes here; one
    `str.translate` is 2x faster than a loop over the characters on such short strings."""
    return len(text) - len(text.translate(_DROP_DIGITS))


def mask_pans(text: str) -> str:
    """`text` with every card number's digits but the last four replaced by `*` (same length)."""
    if not isinstance(text, str) or _ascii_digits(text) < MIN_PAN:
        return text
    spans = find_pans(text)
    if not spans:
        return text
    chars = list(text)
    for start, end in spans:
        _mask_span(chars, start, end)
    return "".join(chars)


def mask_words(texts: Sequence[str]) -> list[str]:
    """Mask card numbers in the words of one line, also when the number is split over several words
    ("4970" "1012" "3456" "7890"): the words are joined by one space, masked, and cut back."""
    texts = list(texts)
    if sum(_ascii_digits(t) for t in texts) < MIN_PAN:
        return texts
    line = " ".join(texts)
    masked = mask_pans(line)
    if masked == line:
        return texts
    out, pos = [], 0
    for t in texts:
        out.append(masked[pos:pos + len(t)])
        pos += len(t) + 1
    return out


def mask_page(page: OcrPage) -> OcrPage:
    """An OCR page whose words carry no card number (line by line, see `mask_words`); boxes unchanged.
    Returns `page` itself when there is nothing to mask."""
    texts = [w.text for w in page.words]
    masked = list(texts)
    for line in page.lines():
        for i, t in zip(line, mask_words([texts[i] for i in line]), strict=True):
            masked[i] = t
    if masked == texts:
        return page
    words = [w if t == w.text else replace(w, text=t) for w, t in zip(page.words, masked, strict=True)]
    return OcrPage(words=words, width=page.width, height=page.height)


def mask_obj(obj: Any) -> Any:
    """Every string inside a JSON-like value masked (dict keys included); other values unchanged."""
    if isinstance(obj, str):
        return mask_pans(obj)
    if isinstance(obj, dict):
        return {mask_pans(k) if isinstance(k, str) else k: mask_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(mask_obj(v) for v in obj)
    return obj


# ------------------------------------------------------------------------------------------------ logs


def secret_values(settings: Any) -> list[str]:
    """The secret strings of a `Settings` (every `SecretStr` field), to redact from logs."""
    from pydantic import SecretStr

    out = []
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr):
            secret = value.get_secret_value()
            if len(secret) >= 4:  # a 1–3 character "secret" would redact half of every line
                out.append(secret)
    return out


_STD_ATTRS = frozenset(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}
REDACTED = "[REDACTED]"


class RedactingFilter(logging.Filter):
    """Masks card numbers and replaces known secrets in a record's message, its `extra=` strings and
    its formatted traceback. Install it on the *handlers* (`install_log_redaction`): a logger's own
    filters do not see records propagated from child loggers."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def clean(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, REDACTED)
        return mask_pans(text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: let the handler report it as usual
            return True
        cleaned = self.clean(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        for k, v in list(vars(record).items()):
            if k not in _STD_ATTRS and not k.startswith("_") and isinstance(v, str):
                setattr(record, k, self.clean(v))
        if record.exc_info and record.exc_info[0] is not None:
            # Formatters print a preset exc_text instead of formatting exc_info again.
            record.exc_text = self.clean(record.exc_text or logging.Formatter().formatException(
                record.exc_info))
        elif record.exc_text:
            record.exc_text = self.clean(record.exc_text)
        if record.stack_info:
            record.stack_info = self.clean(record.stack_info)
        return True


def install_log_redaction(settings: Any = None, logger: logging.Logger | None = None) -> RedactingFilter:
    """Put one `RedactingFilter` (with `settings`' secrets) on every handler of `logger` (default: root);
    a root logger without handlers gets a plain stderr handler first, so nothing bypasses it through
    Python's last-resort handler."""
    logger = logger or logging.getLogger()
    flt = RedactingFilter(secret_values(settings) if settings is not None else ())
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    for handler in logger.handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(flt)
    return flt
