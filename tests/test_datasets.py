"""Training data: SROIE label derivation, label transfer onto OCR words, box mapping, line grouping."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from socratext.document import Word
from training.datasets.common import LabeledPage, group_lines, map_box, split_line_box, transfer_labels
from training.datasets.sroie import (
    SROIE_DIR,
    _Line,
    held_out_stems,
    label_lines,
    match_rates,
    row_texts,
    train_stems,
)

HAS_SROIE = (SROIE_DIR / "key").is_dir()


def test_split_line_box_shares_width_by_characters():
    out = split_line_box("AB CDEF", (0, 10, 70, 20))
    assert [w for w, _ in out] == ["AB", "CDEF"]
    (_, a), (_, b) = out
    assert a == (0, 10, 20, 20) and b == (30, 10, 70, 20)


def _line(text: str, y: int) -> _Line:
    return _Line(text, split_line_box(text, (0, y, 10 * len(text), y + 10)))


def test_label_lines_finds_all_four_keys():
    lines = [_line("KEDAI MAJU SDN BHD (1234)", 0), _line("NO 5, JALAN BESAR,", 20),
             _line("81100 JOHOR BAHRU", 40),
             _line("DATE: 25/12/2018 10:00", 60), _line("SUBTOTAL 9.00", 80), _line("TOTAL RM 9.00", 100),
             _line("CASH 10.00", 120)]
    key = {"company": "KEDAI MAJU SDN BHD", "address": "NO 5, JALAN BESAR, 81100 JOHOR BAHRU",
           "date": "25/12/2018", "total": "9.00"}
    labels, found = label_lines(lines, key)
    assert all(found.values())
    assert labels[0] == ["merchant_name"] * 4 + ["O"], "the registration number is not the name"
    assert labels[1] == ["merchant_address"] * 4 and labels[2] == ["merchant_address"] * 3
    assert labels[3] == ["O", "date", "O"]
    assert labels[4] == ["O", "O"], "a SUBTOTAL line is not the total"
    assert labels[5] == ["O", "O", "total"]


def test_total_keyword_in_another_segment_of_the_same_row():
    """SROIE often stores "Total :" and its amount as two segments of one printed row; the amount of that
    row is the total, not the first line that happens to show the same amount (an item above it)."""
    def seg(text: str, x: int, y: int) -> _Line:
        return _Line(text, split_line_box(text, (x, y, x + 10 * len(text), y + 10)))

    lines = [seg("1 PC ROTI 9.00", 0, 0), seg("SUB TOTAL :", 0, 20), seg("9.00", 300, 21),
             seg("Total (RM) :", 0, 40), seg("9.00", 300, 41), seg("CASH", 0, 60), seg("10.00", 300, 60)]
    labels, found = label_lines(lines, {"total": "9.00"})
    assert found["total"]
    assert labels[0] == ["O"] * 4, "an item line with the same amount is not the total"
    assert labels[2] == ["O"], "the SUB TOTAL row is not the total"
    assert labels[4] == ["total"]
    assert row_texts(lines)[4] == "Total (RM) : 9.00"


def test_transfer_labels_by_overlap_and_text():
    gt_boxes = [(0, 0, 50, 10), (60, 0, 100, 10), (0, 20, 40, 30)]
    gt_texts = ["TOTAL", "12,50", "MERCI"]
    gt_labels = ["O", "total", "O"]
    ocr = [Word("TOTAL", (1, 1, 49, 11)), Word("12,5O", (58, 0, 99, 11)), Word("MERCl", (0, 21, 41, 29)),
           Word("noise", (300, 300, 310, 310))]
    assert transfer_labels(ocr, gt_boxes, gt_texts, gt_labels) == ["O", "total", "O", "O"]
    # an OCR word that merged two ground-truth words takes the one it reads like
    merged = [Word("12,50", (40, 0, 100, 10))]
    assert transfer_labels(merged, gt_boxes, gt_texts, gt_labels) == ["total"]


def test_map_box_scale_and_rotation():
    info = {"scale": 2.0, "angle": 0.0, "width": 100, "height": 200, "out_w": 200, "out_h": 400}
    assert map_box((10, 20, 30, 40), info) == (20, 40, 60, 80)
    # 90° tilt undone: the canvas swaps sides; the image centre stays the centre
    info = {"scale": 1.0, "angle": 90.0, "width": 100, "height": 200, "out_w": 200, "out_h": 100}
    x0, y0, x1, y1 = map_box((45, 95, 55, 105), info)
    assert math.isclose((x0 + x1) / 2, 100, abs_tol=1) and math.isclose((y0 + y1) / 2, 50, abs_tol=1)
    # a point at the top of the page (y small) ends up on the right after a clockwise quarter turn
    x0, y0, x1, y1 = map_box((45, 0, 55, 10), info)
    assert x0 > 150


def test_map_box_matches_pillow_rotation():
    from PIL import Image, ImageDraw

    img = Image.new("L", (300, 200), 255)
    ImageDraw.Draw(img).rectangle((200, 40, 220, 60), fill=0)
    angle = 3.0
    rotated = img.rotate(-angle, expand=True, fillcolor=255)
    bbox = Image.eval(rotated, lambda v: 255 - v).point(lambda v: 255 if v > 128 else 0).getbbox()
    info = {"scale": 1.0, "angle": angle, "width": 300, "height": 200, "out_w": rotated.width,
            "out_h": rotated.height}
    mapped = map_box((200, 40, 221, 61), info)
    assert all(abs(a - b) <= 2 for a, b in zip(mapped, bbox, strict=True))


def test_group_lines_by_vertical_overlap():
    boxes = [(200, 12, 260, 30), (10, 10, 80, 28), (10, 40, 60, 58), (100, 42, 150, 60)]
    assert group_lines(boxes) == [[1, 0], [2, 3]]


def test_labeled_page_validates():
    from socratext.document import OcrPage

    with pytest.raises(ValueError):
        LabeledPage(OcrPage([Word("a", (0, 0, 1, 1))], 10, 10), ["O", "O"])
    with pytest.raises(ValueError):
        LabeledPage(OcrPage([Word("a", (0, 0, 1, 1))], 10, 10), ["not_a_label"])


@pytest.mark.skipif(not HAS_SROIE, reason="needs ../shared/data/sroie")
def test_sroie_split_and_match_rates():
    train, held = train_stems(), held_out_stems()
    assert not set(train) & set(held)
    assert held == sorted(train + held)[int(0.8 * len(train + held)):]
    rates = match_rates(train)
    # measured: date 99.6 %, total 99.6 %, address 98.7 %, company 88.2 % of the 228 training receipts
    assert rates["date"] > 0.95 and rates["total"] > 0.95
    assert rates["merchant_address"] > 0.9 and rates["merchant_name"] > 0.8


@pytest.mark.skipif(not HAS_SROIE, reason="needs ../shared/data/sroie")
def test_sroie_page_without_ocr():
    from training.datasets.sroie import load_sroie

    page, found = load_sroie(train_stems()[0])
    assert page.page.words and page.fields["date"]
    assert "date" in page.labels and "total" in page.labels
    assert all(0 <= v <= 1000 for b in page.page.norm_boxes() for v in b)


@pytest.mark.slow
def test_synthetic_ground_truth_mode(tmp_path: Path, monkeypatch):
    pytest.importorskip("training.synth.generator")
    import training.datasets.synthetic as syn

    monkeypatch.setattr(syn, "CACHE_DIR", tmp_path)
    with pytest.raises(ValueError):
        syn.train_seeds(5, start=899998)
    page = syn.load_synthetic(3, ocr=False)
    assert len(page.labels) == len(page.page.words) > 10
    assert "total" in page.labels and page.fields.get("total")
    again = syn.load_synthetic(3, ocr=False)  # from the cache
    assert again.labels == page.labels
    assert [w.text for w in again.page.words] == [w.text for w in page.page.words]


def test_synthetic_page_cache_is_per_ocr_engine_family(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages read by PP-OCR and by Tesseract are different training sets: a run with one engine must not
    pick up the other's cached pages (Tesseract's keep their historical names)."""
    from types import SimpleNamespace

    from socratext.settings import get_settings
    from training.datasets.synthetic import cache_path

    assert cache_path(5, ocr_engine=SimpleNamespace(name="tesseract")).name == "5-ocr-1.json"
    assert cache_path(5, ocr_engine=SimpleNamespace(name="ppocr")).name == "5-ocr_ppocr-1.json"
    assert cache_path(5, ocr=False).name == "5-gt-1.json"
    monkeypatch.setenv("SOCRATEXT_OCR_BACKEND", "tesserocr")
    get_settings.cache_clear()
    try:
        assert cache_path(5).name == "5-ocr-1.json"
    finally:
        monkeypatch.delenv("SOCRATEXT_OCR_BACKEND")
        get_settings.cache_clear()
    assert cache_path(5).name == "5-ocr_ppocr-1.json"  # the default engine
