"""Matched SROIE labels reconciled with the rules where the rules read the key value (datasets.reconcile)."""

from __future__ import annotations

from socratext.document import OcrPage, Word
from training.datasets.reconcile import reconcile_with_rules, same_value


def _page() -> OcrPage:
    rows = [["KEDAI", "MAJU", "SDN", "BHD"], ["25/12/2018", "10:00"], ["1", "ROTI", "9.00"],
            ["TOTAL", "RM", "9.00"], ["CASH", "10.00"]]
    words = [Word(w, (40 + 130 * k, 40 + 50 * li, 160 + 130 * k, 80 + 50 * li), line_id=li)
             for li, ws in enumerate(rows) for k, w in enumerate(ws)]
    return OcrPage(words, 800, 400)


def test_rules_labels_replace_matched_ones_only_where_the_rules_read_the_key():
    page = _page()
    texts = [w.text for w in page.words]
    item_amount = texts.index("ROTI") + 1
    total_amount = texts.index("RM") + 1
    matched = ["O"] * len(texts)
    matched[item_amount] = "total"  # the matching put the total on the item line's equal amount
    matched[texts.index("25/12/2018")] = "date"

    labels, taken, corrected = reconcile_with_rules(page, matched, {"total": "9.00", "date": "2018-12-25"})
    assert set(taken) == {"total", "date"} and corrected == []
    assert labels[total_amount] == "total" and labels[item_amount] == "O"
    assert labels[texts.index("25/12/2018")] == "date"

    # the key says the total is the 10.00 the matching found: a proven correction, the matched labels stay
    paid = list(matched)
    paid[item_amount] = "O"
    paid[texts.index("CASH") + 1] = "total"
    labels, taken, corrected = reconcile_with_rules(page, paid, {"total": "10.00"})
    assert taken == [] and corrected == ["total"] and labels == paid

    # neither the rules' 9.00 nor the matched 9.00 is the key's 19.00: unproven, the rules' words stay
    labels, taken, corrected = reconcile_with_rules(page, matched, {"total": "19.00"})
    assert taken == ["total"] and corrected == []
    assert labels[total_amount] == "total" and labels[item_amount] == "O"


def test_same_value_is_case_insensitive_for_texts_only():
    assert same_value("merchant_name", "Kedai  Maju", "KEDAI MAJU")
    assert not same_value("total", "9.00", "9.0")
    assert same_value("total", "9. 00", "9.00")


def test_training_reconciles_pages_with_field_values_and_leaves_the_others():
    from training.data import reconcile_pages
    from training.datasets.common import LabeledPage

    page = _page()
    texts = [w.text for w in page.words]
    matched = ["O"] * len(texts)
    matched[texts.index("ROTI") + 1] = "total"
    with_values = LabeledPage(page, matched, fields={"total": "9.00"}, id="a")
    without = LabeledPage(page, matched, id="b")
    (a, b), taken, corrections = reconcile_pages([with_values, without])
    assert taken == {"total": 1} and corrections == set()
    assert a.labels[texts.index("RM") + 1] == "total" and a.id == "a"
    assert b.labels == matched


def test_names_count_as_found_up_to_ocr_misreads():
    from training.datasets.reconcile import same_words

    assert same_words("merchant_name", "KEDAI MAJU SDN BHO", "KEDAI MAJU SDN BHD")
    assert not same_words("merchant_name", "KG.BATU", "SIN THYE & COMPANY")
    assert not same_words("total", "9.08", "9.00"), "amounts and dates only exactly"
    page = _page()
    misread = {"merchant_name": "KEDAI MAJU SDN BHO"}
    assert reconcile_with_rules(page, ["O"] * len(page.words), misread)[1] == ["merchant_name"]
    # exact values only: the misread name is no longer "found"; with matched words that read the key's
    # text exactly on another row, those win
    words = [w.text for w in page.words]
    other = ["O"] * len(words)
    other[words.index("ROTI")] = "merchant_name"
    assert reconcile_with_rules(page, other, {"merchant_name": "ROTI"}, text_similarity=1.0)[1] == []


def test_pages_with_corrections_are_repeated():
    from training.data import repeat_pages
    from training.datasets.common import LabeledPage

    page = _page()
    pages = [LabeledPage(page, ["O"] * len(page.words), id=i) for i in ("a", "b", "c")]
    assert [p.id for p in repeat_pages(pages, {"b"}, 3)] == ["a", "b", "c", "b", "b"]
    assert repeat_pages(pages, {"b"}, 1) == pages and repeat_pages(pages, set(), 5) == pages


def test_with_known_values_a_misread_name_can_prove_a_correction():
    """The key's name spans two printed lines and Tesseract misread a letter of the first. Exact text
    cannot prove the matched words right; compared after the known-values correction serving applies,
    they read the key's name and the rules' first line alone does not: a correction to learn."""
    from socratext.fields.known import KnownValues

    rows = [["KEDAI", "MAJU", "SDN", "BHO"], ["CAWANGAN", "KEPONG"], ["25/12/2018", "10:00"],
            ["1", "ROTI", "9.00"], ["TOTAL", "RM", "9.00"]]
    words = [Word(w, (40 + 130 * k, 40 + 50 * li, 160 + 130 * k, 80 + 50 * li), line_id=li)
             for li, ws in enumerate(rows) for k, w in enumerate(ws)]
    page = OcrPage(words, 1000, 400)
    gold = {"merchant_name": "KEDAI MAJU SDN BHD CAWANGAN KEPONG"}
    matched = ["merchant_name"] * 6 + ["O"] * (len(words) - 6)
    rules_name = [i for i, lab in enumerate(reconcile_with_rules(page, ["O"] * len(words), gold).labels)
                  if lab == "merchant_name"]
    assert rules_name == [0, 1, 2, 3], "the rules take the first line only"
    assert reconcile_with_rules(page, matched, gold).corrected == []  # misread: nothing proven
    known = KnownValues.from_fields([gold])
    rec = reconcile_with_rules(page, matched, gold, known=known)
    assert rec.corrected == ["merchant_name"] and rec.labels == matched


def test_exact_reconciliation_teaches_dropping_the_logos_junk_word():
    """Tesseract reads a logo as a junk word on the name's row; the rules take the whole row. At the
    default similarity that reads as the key "up to misreads" and the rules' words stay the labels (a model
    learns to keep the junk); with exact values only, the matched words that read the key prove a
    correction. Through `training.data.reconcile_pages` as `--reconcile-similarity` passes it."""
    from training.data import reconcile_pages
    from training.datasets.common import LabeledPage

    rows = [["is)", "PROXI", "SUPER"], ["25/12/2018", "10:00"], ["1", "ROTI", "9.00"], ["TOTAL", "9.00"]]
    words = [Word(w, (40 + 130 * k, 40 + 50 * li, 160 + 130 * k, 80 + 50 * li), line_id=li)
             for li, ws in enumerate(rows) for k, w in enumerate(ws)]
    page = OcrPage(words, 800, 400)
    gold = {"merchant_name": "PROXI SUPER"}
    matched = ["O", "merchant_name", "merchant_name"] + ["O"] * (len(words) - 3)
    fuzzy = reconcile_with_rules(page, matched, gold)
    assert fuzzy.taken == ["merchant_name"] and fuzzy.labels[0] == "merchant_name", "rules take the junk"
    exact = reconcile_with_rules(page, matched, gold, text_similarity=1.0)
    assert exact.corrected == ["merchant_name"] and exact.labels == matched
    (lp,), taken, corrections = reconcile_pages([LabeledPage(page, matched, fields=gold, id="p")],
                                                text_similarity=1.0)
    assert corrections == {"p"} and not taken and lp.labels == matched


def test_corrections_repeat_per_source():
    from training.data import repeat_spec

    assert repeat_spec("4") == 4
    assert repeat_spec("synthetic=4, sroie=1") == {"synthetic": 4, "sroie": 1}
