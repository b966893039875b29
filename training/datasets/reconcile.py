"""Word labels derived by matching, reconciled with the rules where the rules already give the key's value.

SROIE has key values, not word labels; `training.datasets.sroie` finds the words by matching the values
against the OCR lines and moving the labels onto Tesseract's words by box overlap. That is noisy in
ways that do not change the value but do teach a model the wrong thing: the first word of a shop name
falls outside its mapped box, one of two equal amounts gets the label and the other not, an address
line is cut at a different place than the field assembly cuts it. The rules extractor's words for a
field are a labelling in the convention field assembly reads, and where they assemble to the key's value
(names and addresses: up to OCR misreads) a correct one. So a field keeps its matched labels only where
they are proven better — they read the exact key value and the rules' words do not (a correction a model
with rule hints, `socratext.model.hints`, has to learn), or the rules miss the field; everywhere else the
rules' words are the labels. Measured: keeping the matched labels wherever the rules were wrong (exact
values only), a model with rule hints learnt to drop right hinted words (held-out SROIE name F1 0.44,
the rules' 0.50) — most of those "wrong" fields are misreads, where neither labelling is right. Pure
function of the page, its labels and the key values.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from socratext.document import OcrPage
from socratext.fields.known import KnownValues
from socratext.labels import OTHER


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


TEXT_FIELDS = ("merchant_name", "merchant_address")
TEXT_SIMILARITY = 0.8
"""How similar (character ratio) the rules' name or address must read to the key's to count as found."""


def same_value(field: str, pred: str, gold: str) -> bool:
    """Exact match after whitespace normalisation, texts case-insensitively (the evaluation's rule)."""
    if field in TEXT_FIELDS:
        return _squash(pred).upper() == _squash(gold).upper()
    return _squash(pred) == _squash(gold)


def same_words(field: str, pred: str, gold: str, text_similarity: float = TEXT_SIMILARITY) -> bool:
    """Did the rules find the field's words? Values exactly, names and addresses when they read as the
    key's text up to OCR misreads (character similarity ≥ `text_similarity`): then the rules picked the
    right rows and Tesseract misread a few letters, which no labelling can fix."""
    if same_value(field, pred, gold):
        return True
    if field not in TEXT_FIELDS:
        return False
    a, b = _squash(pred).upper(), _squash(gold).upper()
    return bool(a and b) and difflib.SequenceMatcher(None, a, b).ratio() >= text_similarity


def _value(rec: object, field: str) -> str | None:
    got = rec.fields.get(field)  # type: ignore[attr-defined]
    return None if got is None or got.value is None else str(got.value)


def _known(known: KnownValues, field: str, value: str) -> str:
    fix = known.correct(field, value)
    return value if fix is None else fix.known


class Reconciled(NamedTuple):
    labels: list[str]
    taken: list[str]  # fields whose words are now the rules'
    corrected: list[str]  # fields the rules read wrong and the derived words provably right


def reconcile_with_rules(page: OcrPage, labels: Sequence[str], gold: Mapping[str, str],
                         text_similarity: float = TEXT_SIMILARITY, known: KnownValues | None = None,
                         ) -> Reconciled:
    """The reconciled labels, and which fields were taken from the rules or are proven corrections of
    them. `gold` holds contract-form values (ISO date, decimal total); `text_similarity` as in
    `same_words` (1.0: exact values only).

    A field keeps its matched labels only where that is *proven* better than the rules: the rules miss
    it (nothing to contradict), or the matched words assemble to the exact key value and the rules'
    words do not (a real correction). Where the rules read a wrong value and the matched words do not
    read the key's value either (OCR misread the true words, or matching found near-misses), neither
    is known to be right; the rules' words are kept so a model is not taught to distrust right hints
    from noise.

    With `known` values (`socratext.fields.known`, built from the training split), both readings are
    compared after the correction of misread names and addresses that serving applies: the matched words
    then prove a correction when they read the key's text up to known misreadings and the rules' words do
    not (an address the rules cut a line short, a name with the logo's junk), where exact text almost never
    can on scanned receipts."""
    from socratext.document import WordLabel
    from socratext.extractors.rules import label_page
    from socratext.fields.assemble import assemble_receipt

    rules = label_page(page)
    by_rules = assemble_receipt(page, rules, receipt_id="reconcile", source={}, model={"name": "rules"})
    by_match = assemble_receipt(page, [WordLabel(lab, 1.0) for lab in labels], receipt_id="reconcile",
                                source={}, model={"name": "matched"})
    out = list(labels)
    taken, corrected = [], []
    for field, value in gold.items():
        r, m = _value(by_rules, field), _value(by_match, field)
        if r is None:
            continue
        if known is not None:
            r_right = same_value(field, _known(known, field, r), value)
            m_right = m is not None and same_value(field, _known(known, field, m), value)
        else:
            r_right = same_words(field, r, value, text_similarity)
            m_right = m is not None and same_value(field, m, value)
        if not r_right and m_right:
            corrected.append(field)
            continue
        out = [OTHER if lab == field else lab for lab in out]
        for i, rl in enumerate(rules):
            if rl.label == field:
                out[i] = field
        taken.append(field)
    return Reconciled(out, taken, corrected)
