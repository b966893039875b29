"""Model and rules together (`CombinedExtractor`): which of the two decides each word, and where the model
may trim the rules' name and address. Pure merging of two label sequences, so it is tested without a
model (tests/test_training.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from socratext.document import OcrPage, WordLabel
from socratext.labels import FIELDS, OTHER
from socratext.model.hints import rules_id

RULES_FIRST = FIELDS
"""By default the rules win on every output field they find: measured end to end on held-out SROIE and
synthetic receipts, the rules (pattern checks: valid dates, SIRET/VAT checksums, TOTAL keywords) were
more precise than the small CPU model on each field they fire on, while the model recovers fields the
rules miss (VAT total, totals without a keyword, payment method, shop names without legal suffix)."""


class CombinedExtractor:
    """Model and rules together, each where it is strong.

    - For the `rules_first` fields, if the rules label any word of the page with the field, the field's
      words are exactly the rules' (the model's words for that field become "O"); otherwise the model's
      words whose probability reaches `fill_threshold`. Measured end to end with the default model
      1.2.0 (held-out SROIE and synthetic): without this gate its fills where the rules are silent were
      mostly wrong (SROIE micro F1 0.588 against the rules' 0.589); at 0.9 (set before measuring) it
      fills nothing wrong there and the combination equals the rules on SROIE (0.602 = 0.602).
    - Elsewhere the model decides, except that a word whose model probability is below `threshold` takes
      the rules' label when the rules give it one (rules are precise on patterns but blind to layout;
      the model is the opposite).
    - For the `trim_fields` (by default none), the model may trim the rules' field at its ends: see
      `trimmed_ends`. Names and addresses are the fields the rules cannot check against a pattern (no
      checksum, no calendar, no TOTAL keyword), so a stray word the rules take along — a logo read as
      "is)", "FF", a street name taken for a shop name — is where the model's layout knowledge is worth
      more than the rules' word.
    """

    def __init__(self, model: Any, rules: Any, threshold: float = 0.6,
                 rules_first: tuple[str, ...] = RULES_FIRST, fill_threshold: float = 0.9,
                 trim_fields: tuple[str, ...] = (), trim_threshold: float | None = None) -> None:
        self.model = model
        self.rules = rules
        self.threshold = threshold
        self.fill_threshold = fill_threshold
        self.rules_first = frozenset(rules_first)
        self.trim_fields = tuple(trim_fields)
        # as sure to take a word out of a rules field as to fill a field the rules left empty
        self.trim_threshold = fill_threshold if trim_threshold is None else trim_threshold
        self.name = f"{model.name}+{rules.name}"
        self.uses_images = bool(getattr(model, "uses_images", True) or getattr(rules, "uses_images", True))
        self.takes_rule_labels = True
        self.version = f"{model.version}+{getattr(rules, 'version', '0')}"
        # a model with rule hints from these very rules (the version it was trained with, labelling with
        # today's date as `model.hints.rule_hints` does) takes their labels from here instead of labelling
        # every page again
        from socratext.extractors.rules import RulesExtractor

        config = getattr(getattr(model, "model", None), "config", None)
        self._hints_from_rules = (isinstance(rules, RulesExtractor) and rules.today is None
                                  and getattr(config, "rule_hints", None) == rules_id())

    def label(self, pages: list[OcrPage], images: list[Image.Image | None] | None = None,
              rule_labels: Sequence[Sequence[WordLabel] | None] | None = None) -> list[list[WordLabel]]:
        """`rule_labels`: the pages' labels by these rules when the OCR stage already computed them
        (None, or None for a page, where not); see `RulesExtractor.label`."""
        if rule_labels is not None and getattr(self.rules, "takes_rule_labels", False):
            r_all = self.rules.label(pages, images, rule_labels=rule_labels)
        else:
            r_all = self.rules.label(pages, images)
        if self._hints_from_rules:  # the model's hints are these very labels: run the rules once
            m_all = self.model.label(pages, images, rule_labels=r_all)
        else:
            m_all = self.model.label(pages, images)
        return [self.merge(m, r) for m, r in zip(m_all, r_all, strict=True)]

    def merge(self, m_page: list[WordLabel], r_page: list[WordLabel]) -> list[WordLabel]:
        """One page: the model's and the rules' labels → the combined labels (pure)."""
        found = {r.label for r in r_page} & self.rules_first
        trimmed = trimmed_ends(m_page, r_page, self.trim_fields, self.trim_threshold)
        row = []
        for i, (m, r) in enumerate(zip(m_page, r_page, strict=True)):
            if i in trimmed:
                row.append(WordLabel(OTHER, m.probability))
            elif r.label in found:
                row.append(r)
            elif m.label in found:
                row.append(WordLabel(OTHER, m.probability))
            elif m.label in self.rules_first and m.probability < self.fill_threshold:
                row.append(r if r.label != OTHER else WordLabel(OTHER, m.probability))
            elif m.probability < self.threshold and r.label != OTHER:
                row.append(r)
            else:
                row.append(m)
        return row


def trimmed_ends(m_page: Sequence[WordLabel], r_page: Sequence[WordLabel], fields: Sequence[str],
                 threshold: float) -> set[int]:
    """Indices of the rules' words of each of `fields` that the model takes out (pure).

    In reading order, the field's leading words are dropped while the model calls them "other" with
    probability at least `threshold`, then its trailing words likewise; a name or an address is printed
    as one run of text, so the model trims its ends but never punches a hole in the middle (the words
    it is least sure of there are OCR misreads of real name words, "GARDENTA BAKEBIES"). Every word may
    go: the rules' "name" was then a stray line, and no name beats a wrong one."""
    def sure(i: int) -> bool:
        return m_page[i].label == OTHER and m_page[i].probability >= threshold

    out: set[int] = set()
    for f in fields:
        idx = [i for i, r in enumerate(r_page) if r.label == f]
        lo = 0
        while lo < len(idx) and sure(idx[lo]):
            lo += 1
        hi = len(idx)
        while hi > lo and sure(idx[hi - 1]):
            hi -= 1
        out.update(idx[:lo])
        out.update(idx[hi:])
    return out
