"""The label set, in one place: output fields, word labels and the BIO tags the layout models predict.

A model directory saves `BIO_LABELS` beside its weights (see `socratext.model`), so a model always
carries the label set it was trained with; this module is the current version of that set.
"""

from __future__ import annotations

LABEL_SET_VERSION = "1"

# Fields of the output contract, in the order they are exported.
FIELDS: tuple[str, ...] = (
    "merchant_name", "merchant_address", "siret", "vat_number", "date", "time", "total",
    "vat_total", "currency", "payment_method",
)

# Word-level parts of line items and of the VAT table.
ITEM_PARTS: tuple[str, ...] = ("item_name", "item_quantity", "item_unit_price", "item_total_price")
VAT_PARTS: tuple[str, ...] = ("vat_rate", "vat_base", "vat_amount")

OTHER = "O"
# Every label a word can carry (without BIO prefixes).
WORD_LABELS: tuple[str, ...] = (OTHER, *FIELDS, *ITEM_PARTS, *VAT_PARTS)

# BIO tags for token classification: "O", then B-/I- for every non-O word label.
BIO_LABELS: tuple[str, ...] = (OTHER,) + tuple(
    f"{p}-{lab}" for lab in WORD_LABELS if lab != OTHER for p in ("B", "I")
)


def strip_bio(tag: str) -> str:
    """`B-total` → `total`, `O` → `O`."""
    return tag[2:] if tag[:2] in ("B-", "I-") else tag
