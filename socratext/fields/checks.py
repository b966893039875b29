"""Arithmetic and identity cross-checks between extracted fields.

A receipt is redundant: the items add up to the total, each VAT line's base × rate gives its amount,
the VAT amounts add up to the VAT total, the SIRET carries a checksum and the VAT number embeds the
SIREN. Field assembly uses these checks to raise the confidence of values that agree and to lower it
(so that the receipt goes to review) when they contradict each other. Every check returns True
(consistent), False (contradiction) or None (not enough data to say).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from socratext.fields.normalize import fr_vat_key, siret_is_valid

TOLERANCE = Decimal("0.02")


def _dec(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None


def close(a: Decimal, b: Decimal, tol: Decimal = TOLERANCE) -> bool:
    return abs(a - b) <= tol


def items_match_total(item_totals: list[str], total: str | None) -> bool | None:
    """Sum of item prices vs total. Equal → True. A sum above the total is inconclusive (unlabelled
    discounts, loyalty coupons), so is a sum below it (items the extractor missed) unless it is far off."""
    t = _dec(total)
    values = [v for v in (_dec(x) for x in item_totals) if v is not None]
    if t is None or not values:
        return None
    s = sum(values, Decimal(0))
    if close(s, t, TOLERANCE * max(1, len(values) // 5)):
        return True
    if s > t or s >= t / 2:
        return None
    return False


def vat_line_consistent(rate: str | None, base: str | None, amount: str | None) -> bool | None:
    """base × rate ≈ amount (±0.02). Receipts print either the excl.-tax base or the incl.-tax total in the
    base column, so both readings are accepted."""
    r, b, a = _dec(rate), _dec(base), _dec(amount)
    if r is None or b is None or a is None:
        return None
    expected_ht = b * r / 100
    expected_ttc = b * r / (100 + r)
    return close(expected_ht, a) or close(expected_ttc, a)


def vat_amounts_match_total(amounts: list[str], vat_total: str | None) -> bool | None:
    """Sum of the VAT lines' amounts ≈ the VAT total."""
    t = _dec(vat_total)
    values = [v for v in (_dec(x) for x in amounts) if v is not None]
    if t is None or not values:
        return None
    return close(sum(values, Decimal(0)), t, TOLERANCE * len(values))


def vat_bases_match_total(bases: list[str], amounts: list[str], total: str | None) -> bool | None:
    """Σ base + Σ amount ≈ total (bases excl. tax), or Σ base ≈ total (bases printed incl. tax)."""
    t = _dec(total)
    bs = [v for v in (_dec(x) for x in bases) if v is not None]
    am = [v for v in (_dec(x) for x in amounts) if v is not None]
    if t is None or not bs:
        return None
    tol = TOLERANCE * (len(bs) + len(am))
    sb = sum(bs, Decimal(0))
    return close(sb + sum(am, Decimal(0)), t, tol) or close(sb, t, tol)


def siret_ok(siret: str | None) -> bool | None:
    return None if siret is None else siret_is_valid(siret)


def vat_matches_siret(vat_number: str | None, siret: str | None) -> bool | None:
    """A French VAT number `FR kk SIREN` must embed the SIRET's first 9 digits and their key."""
    if not vat_number or not siret or not vat_number.startswith("FR") or len(vat_number) != 13:
        return None
    siren, key = siret[:9], vat_number[2:4]
    return vat_number[4:] == siren and (not key.isdigit() or key == fr_vat_key(siren))


def date_plausible(iso: str | None, today: dt.date | None = None) -> bool | None:
    """Not before 2000 and not more than one day in the future (clock skew, time zones)."""
    if not iso:
        return None
    try:
        d = dt.date.fromisoformat(iso)
    except ValueError:
        return False
    today = today or dt.date.today()
    return dt.date(2000, 1, 1) <= d <= today + dt.timedelta(days=1)


def item_consistent(quantity: str | None, unit_price: str | None, total_price: str | None) -> bool | None:
    """quantity × unit price ≈ line total."""
    q, u, t = _dec(quantity), _dec(unit_price), _dec(total_price)
    if q is None or u is None or t is None:
        return None
    return close(q * u, t, TOLERANCE + abs(t) * Decimal("0.005"))
