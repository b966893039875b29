"""Label Studio import: percent boxes, y axis pointing down, label mapping, line grouping."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from training.datasets.labelstudio import SAMPLE, load_export, split, task_to_page


def _result(text, x, y, w, h, label=None, ow=1000, oh=2000):
    value = {"x": x, "y": y, "width": w, "height": h, "rotation": 0}
    if label:
        value["rectanglelabels"] = [label]
    return {"type": "rectanglelabels", "meta": {"text": [text]}, "value": value,
            "original_width": ow, "original_height": oh}


def _task(results, tid=1):
    return {"id": tid, "annotations": [{"id": 1, "result": results}]}


def test_percent_boxes_labels_and_lines():
    task = _task([
        _result("12,50", 80, 90, 10, 1, "total_price"),
        _result("MONOP", 10, 2, 30, 2, "magasin"),
        _result("TOTAL", 10, 90.2, 20, 1),
        _result("A", 95, 50, 2, 1, "code_tva"),
        _result("20%", 50, 70, 5, 1, "taux_tva"),
    ])
    lp = task_to_page(task)
    assert lp is not None and lp.image is None
    texts = [w.text for w in lp.page.words]
    assert texts == ["MONOP", "A", "20%", "TOTAL", "12,50"], "top to bottom, left to right"
    assert lp.labels == ["merchant_name", "O", "vat_rate", "O", "total"]
    monop = lp.page.words[0]
    assert monop.box == (100, 40, 400, 80), "x, y are the top-left corner in percent; y grows downwards"
    total_line = {w.line_id for w in lp.page.words if w.text in ("TOTAL", "12,50")}
    assert len(total_line) == 1


def test_task_without_annotation_is_skipped():
    assert task_to_page({"id": 3, "annotations": []}) is None
    assert task_to_page({"id": 3, "annotations": [{"was_cancelled": True, "result": []}]}) is None


def test_load_export_file(tmp_path):
    path = tmp_path / "export.json"
    tasks = [_task([_result("X", 1, 1, 1, 1)], tid=2), _task([_result("Y", 1, 1, 1, 1)], 1)]
    path.write_text(json.dumps(tasks))
    pages = load_export(path)
    assert [p.page.words[0].text for p in pages] == ["Y", "X"]


@pytest.mark.skipif(not SAMPLE.exists(), reason="needs ../shared/data/socratext/labelstudio_sample.json")
def test_real_sample():
    pages = load_export(SAMPLE)
    assert len(pages) == 35
    counts = Counter(lab for p in pages for lab in p.labels)
    # the export holds 63 magasin, 55 date, 48-49 total_price, 460 item_name words ...
    assert counts["merchant_name"] > 50 and counts["date"] > 40 and counts["total"] > 40
    assert counts["item_name"] > 400 and counts["vat_rate"] > 30
    assert "vat_number" not in counts, "code_tva is a VAT code letter, not a VAT number"
    assert counts["O"] > 2000
    for p in pages:
        for b in p.page.norm_boxes():
            assert all(0 <= v <= 1000 for v in b) and b[0] <= b[2] and b[1] <= b[3]
    # not flipped: shop names sit in the top part of the receipt, totals lower down
    tops = [b[1] for p in pages for b, lab in zip(p.page.norm_boxes(), p.labels, strict=True)
            if lab == "merchant_name"]
    totals = [b[1] for p in pages for b, lab in zip(p.page.norm_boxes(), p.labels, strict=True)
              if lab == "total"]
    assert sorted(tops)[len(tops) // 2] < 250
    assert sorted(tops)[len(tops) // 2] < sorted(totals)[len(totals) // 2]
    train, held = split(pages)
    assert len(train) == 28 and len(held) == 7
