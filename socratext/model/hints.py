"""Rule hints: the rules extractor's word labels as an input of the layout model.

Why: trained from scratch on a few hundred real receipts (no pretrained weights are reachable here), a
small layout model learns far less than the keyword/regex rules already know (default model 1.2.0: SROIE
micro F1 0.36 against the rules' 0.60), while the rules generalise but cannot learn from reviewed
receipts. A model that *sees* the rules' label of every word starts from the rules' answer and only has to
learn where that answer is wrong — the corrections reviewers make — which a small model can learn from
few examples. This is the "model + rules" combination learnt end to end instead of gated by hand
(`CombinedExtractor`).

How: LayoutLM embeddings already add a learnt "token type" vector to every token (BERT's segment
embedding, unused for single-segment receipts). A hinted model has one token type per word label
(`type_vocab_size = len(WORD_LABELS)`); every subword of a word gets the index of the label the rules gave
that word, [CLS]/[SEP]/padding get 0 ("O"). The architecture stays transformers' own, so such a checkpoint
loads with `from_pretrained` like any other; its config records `rule_hints` (which rules produced the
hints) so the extractor knows it must compute them, and so a model is never fed hints from rules it was not
trained with without that being visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from socratext.document import OcrPage
from socratext.labels import OTHER, WORD_LABELS

HINT_LABELS: tuple[str, ...] = WORD_LABELS
"""Token type index → word label ("O" first, so padding and special tokens are "no hint")."""

HINT_INDEX = {lab: i for i, lab in enumerate(HINT_LABELS)}


def rules_id() -> str:
    """Which rules produce the hints, as recorded in a hinted model's config (`rules-<version>`)."""
    from socratext.extractors.rules import rules_id as current

    return current()


def hint_ids(labels: Sequence[str]) -> list[int]:
    """Word labels → token type indices (unknown labels count as "O"; pure)."""
    return [HINT_INDEX.get(lab, HINT_INDEX[OTHER]) for lab in labels]


def rule_hints(page: OcrPage) -> list[int]:
    """The rules extractor's label of every word of `page`, as token type indices."""
    from socratext.extractors.rules import label_page

    return hint_ids([w.label for w in label_page(page)])


def uses_rule_hints(config: Any) -> bool:
    """Was this model trained with rule hints (then it must get them at inference too)?"""
    return bool(getattr(config, "rule_hints", None))


def enable_rule_hints(config: Any) -> Any:
    """Make a fresh config take rule hints: one token type per word label, the rules' id recorded, no
    row smoothing."""
    config.type_vocab_size = len(HINT_LABELS)
    config.rule_hints = rules_id()
    # the hints carry the rules' rows; row smoothing (socratext.model.postprocess) would fill them to
    # their ends and add OCR junk the rules leave out — measured on held-out SROIE addresses
    config.row_smoothing = False
    return config
