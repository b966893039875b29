"""Word labels derived by matching, reconciled with the rules where the rules already give the key's value.

SROIE has key values, not word labels; `training.datasets.sroie` finds the words by matching the values
against the OCR lines and moving the labels onto Tesseract's words by box overlap. That is noisy in
ways that do not change the value but do teach a model the wrong thing: the first word of a shop name
falls outside its mapped box, one of two equal amounts gets the label and the other not, an address
line is cut at a different place than the field assembly cuts it. When the rules extractor's words for
a field assemble to exactly the key's value, those words *are* a correct labelling of that field, in
the convention field assembly reads — so they replace the matched ones. Fields the rules get wrong keep
the matched labels: those are the corrections a model (with rule hints, `socratext.model.hints`) has to
learn. Pure function of the page, its labels and the key values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from socratext.document import OcrPage
from socratext.labels import OTHER


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def same_value(field: str, pred: str, gold: str) -> bool:
    """Exact match after whitespace normalisation, texts case-insensitively (the evaluation's rule)."""
    if field in ("merchant_name", "merchant_address"):
        return _squash(pred).upper() == _squash(gold).upper()
    return _squash(pred) == _squash(gold)


def reconcile_with_rules(page: OcrPage, labels: Sequence[str], gold: Mapping[str, str],
                         ) -> tuple[list[str], list[str]]:
    """(labels, fields taken from the rules). `gold` holds contract-form values (ISO date, decimal total)."""
    from socratext.extractors.rules import label_page
    from socratext.fields.assemble import assemble_receipt

    rules = label_page(page)
    rec = assemble_receipt(page, rules, receipt_id="reconcile", source={}, model={"name": "rules"})
    out = list(labels)
    taken = []
    for field, value in gold.items():
        got = rec.fields.get(field)
        if got is None or got.value is None or not same_value(field, str(got.value), value):
            continue
        out = [OTHER if lab == field else lab for lab in out]
        for i, r in enumerate(rules):
            if r.label == field:
                out[i] = field
        taken.append(field)
    return out, taken
