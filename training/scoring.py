"""Word-level scores of a model on labelled pages: what training validates on and the retrain gate
compares (end-to-end field F1 is `training.evaluate`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from socratext.labels import OTHER, WORD_LABELS
from socratext.model.extractor import LayoutModelExtractor
from training.datasets.common import LabeledPage


def word_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Word-level precision/recall/F1 per non-O label, and their macro average over labels that occur
    in the gold data (a label nobody annotated would only add a meaningless 0 or 1)."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for g_page, p_page in zip(gold, pred, strict=True):
        for g, p in zip(g_page, p_page, strict=True):
            if g == p:
                if g != OTHER:
                    tp[g] += 1
            else:
                if p != OTHER:
                    fp[p] += 1
                if g != OTHER:
                    fn[g] += 1
    per = {}
    for lab in WORD_LABELS:
        if lab == OTHER or tp[lab] + fn[lab] == 0:
            continue
        prec = tp[lab] / (tp[lab] + fp[lab]) if tp[lab] + fp[lab] else 0.0
        rec = tp[lab] / (tp[lab] + fn[lab])
        per[lab] = {"p": prec, "r": rec, "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
                    "support": tp[lab] + fn[lab]}
    macro = float(np.mean([v["f1"] for v in per.values()])) if per else 0.0
    return {"macro_f1": macro, "per_label": per}


def evaluate_pages(model: Any, tokenizer: Any, pages: Sequence[LabeledPage], max_length: int,
                   stride: int, batch_size: int) -> dict[str, Any]:
    """Word-level F1 of `model` on `pages` through the inference path (windows merged per word)."""
    ext = LayoutModelExtractor(model, tokenizer, device=next(model.parameters()).device,
                               max_length=max_length, stride=stride, batch_size=batch_size)
    preds = ext.label([p.page for p in pages], [p.image for p in pages])
    model.train()
    return word_f1([p.labels for p in pages], [[w.label for w in row] for row in preds])



def held_out_f1(model_dir: str | Path, pages: Sequence[LabeledPage], device: Any = "cpu",
                max_length: int = 512, stride: int = 128) -> dict[str, Any]:
    """Word-level F1 of a saved model (bare, without a rules combination) on the held-out pages."""
    ext = LayoutModelExtractor.from_pretrained(model_dir, device=str(device), combine=False,
                                               max_length=max_length, stride=stride, batch_size=16)
    preds = ext.label([p.page for p in pages], [p.image for p in pages])
    return word_f1([p.labels for p in pages], [[w.label for w in row] for row in preds])
