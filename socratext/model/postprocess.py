"""Row consistency for the layout model's word labels.

A merchant name or an address is printed as whole rows, but a small token classifier decides word by
word, and on a noisy scan it drops one word of a row ("GARDENIA BAKERIES (KL)/O SDN BHD") — which turns a
right field into a wrong one, since the value is the row's text. Averaging the field's probability over
the row and labelling the whole row when that average wins fixes those holes without touching the
model: measured end to end in `training/evaluate.py` (see the default model's card).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from socratext.document import OcrPage
from socratext.fields.rows import page_rows
from socratext.labels import OTHER

ROW_FIELDS: tuple[str, ...] = ("merchant_name", "merchant_address")
"""Fields printed as whole rows; other fields (amounts, dates) share their row with other text."""


HOLES_ONLY = frozenset({"merchant_name"})
"""A name row is filled between its labelled words only: what follows a shop name on its row is a
registration or phone number or a branch, which the name does not include; an address runs to the
row's ends."""


def fills(field: str, text: str) -> bool:
    """May row smoothing give `field` to this unlabelled word? Not a number inside a name row: shop
    names are words, and the digits printed beside them are registration or phone numbers ("GARDENIA
    BAKERIES (KL) SDN BHD (139386 X)") that the model rightly left out."""
    return field != "merchant_name" or not any(c.isdigit() for c in text)


def row_consistent(page: OcrPage, probs: np.ndarray, labels: Sequence[str],
                   fields: Sequence[str] = ROW_FIELDS, min_share: float = 0.5) -> np.ndarray:
    """Word label indices after row smoothing (pure).

    `probs` is (n_words, n_labels) in `labels` order. For each visual row, the row field with the
    highest mean probability over the row's words takes the row when that mean is at least
    `min_share`; only words whose own best label is "other" or another row field change (a date or an
    amount printed on the same row keeps its label), and only when `fills` allows it."""
    best = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    cols = [labels.index(f) for f in fields if f in labels]
    if not cols or not len(probs):
        return best
    texts = [w.text for w in page.words]
    mutable = set(cols)
    if OTHER in labels:
        mutable.add(labels.index(OTHER))
    out = best.copy()
    for row in page_rows(page):
        idx = np.asarray(row.words, dtype=np.int64)
        if len(idx) < 2:
            continue
        means = probs[idx][:, cols].mean(axis=0)
        k = int(means.argmax())
        if means[k] < min_share:
            continue
        field = labels[cols[k]]
        span = idx
        if field in HOLES_ONLY:  # between the row's first and last word the model gave the field
            have = [p for p, i in enumerate(idx) if int(best[i]) == cols[k]]
            span = idx[have[0]:have[-1] + 1] if have else idx[:0]
        for i in span:
            if int(best[i]) in mutable and int(best[i]) != cols[k] and fills(field, texts[i]):
                out[i] = cols[k]
    return out
