"""Row smoothing of the layout model's labels (socratext.model.postprocess)."""

from __future__ import annotations

import numpy as np

from socratext.document import OcrPage, Word
from socratext.model.postprocess import row_consistent

LABELS = ["O", "merchant_name", "merchant_address", "date"]


def two_rows() -> OcrPage:
    row0 = [Word(t, (10 + 60 * i, 10, 60 + 60 * i, 30), line_id=0) for i, t in enumerate(
        ["GARDENIA", "BAKERIES", "(KL)", "SDN", "BHD"])]
    row1 = [Word(t, (10 + 60 * i, 50, 60 + 60 * i, 70), line_id=1) for i, t in enumerate(
        ["Date:", "25/10/2017", "Lot", "3"])]
    return OcrPage(row0 + row1, 400, 100)


def probs(rows: list[list[float]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32)


def test_a_hole_in_a_name_row_is_filled() -> None:
    p = probs([[0.1, 0.9, 0, 0], [0.1, 0.9, 0, 0], [0.6, 0.4, 0, 0], [0.1, 0.8, 0.1, 0], [0.3, 0.7, 0, 0],
               [0.9, 0, 0, 0.1], [0.05, 0, 0, 0.95], [0.8, 0, 0.2, 0], [0.9, 0, 0.1, 0]])
    out = row_consistent(two_rows(), p, LABELS)
    assert [LABELS[k] for k in out[:5]] == ["merchant_name"] * 5
    # the second row has no row field above half: untouched, and the date keeps its label anyway
    assert [LABELS[k] for k in out[5:]] == ["O", "date", "O", "O"]


def test_other_fields_in_a_name_row_keep_their_label() -> None:
    p = probs([[0, 1, 0, 0]] * 4 + [[0.1, 0.3, 0, 0.6]] + [[1, 0, 0, 0]] * 4)
    out = row_consistent(two_rows(), p, LABELS)
    assert LABELS[out[4]] == "date"


def test_without_row_fields_it_is_argmax() -> None:
    p = np.random.default_rng(0).random((9, 2)).astype(np.float32)
    assert list(row_consistent(two_rows(), p, ["O", "date"])) == list(p.argmax(axis=1))
    assert len(row_consistent(OcrPage([], 10, 10), np.zeros((0, 4)), LABELS)) == 0


def test_numbers_beside_a_name_are_not_pulled_into_it() -> None:
    words = [Word(t, (10 + 60 * i, 10, 60 + 60 * i, 30), line_id=0) for i, t in enumerate(
        ["GARDENIA", "BAKERIES", "SDN", "BHD", "(139386", "X)"])]
    p = probs([[0.1, 0.9, 0, 0]] * 4 + [[0.9, 0.1, 0, 0]] * 2)
    out = row_consistent(OcrPage(words, 400, 40), p, LABELS)
    assert [LABELS[k] for k in out] == ["merchant_name"] * 4 + ["O", "O"]  # a hole is filled, not the tail
    p[1] = [0.9, 0.1, 0, 0]  # "BAKERIES" missed: a hole between labelled words
    p[4] = [0.1, 0.9, 0, 0]  # "(139386" labelled: digits are never pulled in, but it bounds the span
    out = row_consistent(OcrPage(words, 400, 40), p, LABELS)
    assert [LABELS[k] for k in out] == ["merchant_name"] * 5 + ["O"]
