"""The end-to-end evaluation CLI (image → Tesseract → extractor → fields) on two held-out synthetic
receipts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import training.evaluate as ev


def test_evaluate_scores_extractors_and_reuses_the_ocr_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(ev, "EVAL_OCR_CACHE", tmp_path / "ocr")
    args = ["--dataset", "synthetic", "--n", "2", "--extractors", "rules"]
    assert ev.main([*args, "--out", str(tmp_path / "one.json")]) == 0
    cached = sorted(p.name for p in (tmp_path / "ocr").rglob("*") if p.is_file())
    assert len(cached) == 2, "one OCR page per receipt, keyed by the image and the OCR settings"
    assert ev.main([*args, "--out", str(tmp_path / "two.json")]) == 0
    assert sorted(p.name for p in (tmp_path / "ocr").rglob("*") if p.is_file()) == cached
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    rules, again = one["results"]["rules"], two["results"]["rules"]
    assert (rules["per_field"], rules["micro"]) == (again["per_field"], again["micro"]), \
        "the cached pages give the same words, so the same scores"
    assert rules["receipts"] == 2 and set(rules["per_field"]) >= {"merchant_name", "date", "total"}
    assert rules["micro"]["f1"] > 0.8  # the rules read clean synthetic receipts well (0.975 on 100)
