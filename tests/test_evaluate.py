"""The end-to-end evaluation CLI (image → Tesseract → extractor → fields) on two held-out synthetic
receipts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import training.evaluate as ev
from socratext.document import OcrPage, Word


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


def _page(*lines: str) -> OcrPage:
    words = [Word(t, (10 * j, 20 * i, 10 * j + 9, 20 * i + 15), line_id=i)
             for i, line in enumerate(lines) for j, t in enumerate(line.split())]
    return OcrPage(words, 400, 20 * len(lines) + 20)


PAGE = _page("SHOP 123 SDN BHD", "NO 5, JALAN SAGU", "68000 AMPANG", "DATE: 25/12/2018", "TOTAL RM 9.00",
             "CASH 10.00")


@pytest.mark.parametrize(("field", "gold", "expected"), [
    ("merchant_name", "Shop 123 Sdn Bhd", True),  # case and spaces do not matter
    ("merchant_address", "NO 5, JALAN SAGU 68000 AMPANG", True),  # across lines
    ("merchant_address", "NO 5, JALAN SAGU 68000 AMPANG, SELANGOR", False),  # a line Tesseract never read
    ("merchant_name", "SH0P 123", False),  # the true text, not a misread of it
    ("date", "2018-12-25", True),  # parsed from the line, not matched as text
    ("date", "2018-12-26", False),
    ("total", "9.00", True),
    ("total", "10.00", True),  # another amount on the page: readable, a wrong choice of words
    ("total", "19.00", False),
])
def test_readable_says_whether_the_ocr_words_hold_the_true_value(field: str, gold: str, expected: bool):
    assert ev.readable(field, gold, PAGE) is expected


def test_misses_lists_wrong_missing_and_spurious_fields_with_their_cause():
    gold = {"merchant_name": "SHOP 123 SDN BHD", "date": "2018-12-25", "total": "9.00"}
    pred = {"merchant_name": "shop 123 sdn  bhd", "date": "2018-12-28", "merchant_address": "NO 5"}
    got = ev.misses("r1", "rules", ["merchant_name", "merchant_address", "date", "total"], pred, gold, PAGE)
    assert [(m.field, m.predicted, m.gold, m.readable) for m in got] == [
        ("merchant_address", "NO 5", None, None),  # spurious: no true value
        ("date", "2018-12-28", "2018-12-25", True),  # wrong words chosen
        ("total", None, "9.00", True),  # missed though readable
    ]
    assert ev.miss_causes(got, "rules", "date") == (1, 0, 0)
    assert ev.miss_causes(got, "rules", "merchant_address") == (0, 0, 1)


def test_evaluate_cli_writes_every_miss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]):
    monkeypatch.setattr(ev, "EVAL_OCR_CACHE", tmp_path / "ocr")
    out, errors = tmp_path / "eval.json", tmp_path / "errors.jsonl"
    assert ev.main(["--dataset", "synthetic", "--n", "2", "--extractors", "rules", "--out", str(out),
                    "--errors", str(errors)]) == 0
    rules = json.loads(out.read_text())["results"]["rules"]
    rows = [json.loads(line) for line in errors.read_text().splitlines()]
    assert all(r["extractor"] == "rules" and r["receipt"].startswith("synth-") for r in rows)
    scored = {f for f, d in rules["per_field"].items() if d["precision"] + d["recall"] > 0}
    perfect = {f for f, d in rules["per_field"].items() if d["f1"] == 1.0}
    items_missed = {"items"} if rules["items"]["f1"] < 1.0 else set()  # line items: scored apart
    assert {r["field"] for r in rows} == (scored - perfect) | items_missed, \
        "a miss exactly where a field is not perfect"
    assert "misses: readable" in capsys.readouterr().out


def test_line_items_are_right_by_name_and_line_total() -> None:
    """An item counts when its name (spaces and case aside) and line total both match a true item, each
    true item once: the same article listed twice must be read twice."""
    gold = [{"name": "EXPRESSO", "total_price": "1.80"}, {"name": "EXPRESSO", "total_price": "1.80"},
            {"name": "Salade  Cesar", "total_price": "13.99", "quantity": "1"}]
    pred = [{"name": "expresso", "total_price": "1.80"}, {"name": "SALADE CESAR", "total_price": "13.99"},
            {"name": "SALADE CESAR (13.99)", "total_price": "13.99"}, {"name": "TVA", "total_price": "2.00"}]
    right, spurious, missed = ev.match_items(pred, gold)
    assert right == 2
    assert [p["name"] for p in spurious] == ["SALADE CESAR (13.99)", "TVA"]
    assert missed == [gold[1]]
    score = ev.Score(["total"])
    score.update_items(pred, gold)
    score.update_items([], [{"name": "PAIN", "total_price": "1.10"}])
    assert score.table()["items"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert ev.Score(["total"]).table()["items"] is None  # a data set without items (SROIE) says so


def test_validation_split_is_what_training_validates_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`--split validation` scores the pages `training.train` kept out of training (the last 10 % of its
    seeds and of SROIE's training stems), so settings are chosen without looking at the held-out set."""
    assert ev.validation_synth_seeds(20) == [18, 19]
    assert ev.validation_synth_seeds(2000) == list(range(1800, 2000))
    monkeypatch.setattr(ev, "EVAL_OCR_CACHE", tmp_path / "ocr")
    out, errors = tmp_path / "val.json", tmp_path / "errors.jsonl"
    assert ev.main(["--split", "validation", "--n-synth", "20", "--n", "5", "--dataset", "synthetic",
                    "--extractors", "rules", "--out", str(out), "--errors", str(errors)]) == 0
    got = json.loads(out.read_text())
    assert (got["split"], got["n"], got["results"]["rules"]["receipts"]) == ("validation", 2, 2)
    missed = {json.loads(line)["receipt"] for line in errors.read_text().splitlines()}
    assert missed <= {"synth-18", "synth-19"}, "only the two validation receipts were read"


def test_labelstudio_held_out_is_scored_on_the_annotators_words(tmp_path: Path) -> None:
    """The French sample has no images: its held-out tasks are read on their own words, the truth is
    their labelled words through field assembly, and the rules are scored field by field."""
    from training.datasets.labelstudio import SAMPLE, load_export, split
    from training.evaluate import LABELSTUDIO_FIELDS, iter_labelstudio, main

    if not SAMPLE.is_file():
        pytest.skip(f"no Label Studio export at {SAMPLE}")
    samples = list(iter_labelstudio())
    assert len(samples) == len(split(load_export())[1]) > 0
    assert all(s.image is None and s.page is not None and set(s.gold) <= set(LABELSTUDIO_FIELDS)
               for s in samples)
    assert any("total" in s.gold for s in samples)
    out = tmp_path / "ls.json"
    assert main(["--dataset", "labelstudio", "--extractors", "rules", "--out", str(out)]) == 0
    table = json.loads(out.read_text())["results"]["rules"]
    assert table["receipts"] == len(samples)
    assert 0.5 < table["per_field"]["date"]["f1"] <= 1.0
    # its training tasks, for studying the rules without looking at the held-out ones
    train = list(iter_labelstudio(part="train"))
    assert [s.name for s in train] == [lp.id for lp in split(load_export())[0]]
    assert not {s.name for s in train} & {s.name for s in samples}
    assert main(["--dataset", "labelstudio", "--split", "train", "--extractors", "rules",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["results"]["rules"]["receipts"] == len(train)
    # what training validates on: the last tenth of the training tasks, as `training.data` splits them
    val = [s.name for s in iter_labelstudio(part="validation")]
    assert val == [s.name for s in train][-len(val):] and len(val) == round(len(train) * 0.1)


def test_sroie_validation_stems_are_trainings_and_not_held_out() -> None:
    from training.datasets.sroie import SROIE_DIR, held_out_stems, train_stems

    if not SROIE_DIR.exists():
        pytest.skip(f"no SROIE data at {SROIE_DIR}")
    val = ev.validation_sroie_stems()
    assert val == train_stems()[-len(val):] and len(val) == round(len(train_stems()) * 0.1)
    assert not set(val) & set(held_out_stems())
