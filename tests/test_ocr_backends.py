"""OCR backends: the in-process Tesseract API (tesserocr) against the `tesseract` program (pytesseract).

The engine tests run the real Tesseract on small rendered images and skip where tesserocr or the
language data are missing; the parsing and backend selection tests need neither.
"""

from __future__ import annotations

import threading

import pytest
from PIL import Image, ImageDraw, ImageFont

from socratext.errors import OCR_FAILED, SocratextError
from socratext.ocr import TesseractOcr, make_ocr, words_from_data
from socratext.ocr import tesserocr_backend as tb
from socratext.pipeline import OcrStage
from socratext.settings import Settings

needs_tesserocr = pytest.mark.skipif(not tb.available() or tb.tessdata_dir() is None,
                                     reason="tesserocr or tessdata not installed")

TSV = (
    "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n"
    "1\t1\t0\t0\t0\t0\t0\t0\t300\t100\t-1\t\n"
    "4\t1\t1\t1\t1\t0\t10\t10\t200\t30\t-1\t\n"
    "5\t1\t1\t1\t1\t1\t10\t10\t80\t30\t91.5\tTOTAL\n"
    "5\t1\t1\t1\t1\t2\t100\t12\t60\t28\t88\t12,50\n"
    "5\t1\t1\t1\t1\t3\t170\t12\t5\t28\t0\t\n"
    "5\t1\t2\t1\t1\t1\t10\t60\t290\t30\t40\tCB\n"
)


def text_image(lines: list[str], size: tuple[int, int] = (700, 200)) -> Image.Image:
    img = Image.new("L", size, 255)
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 34)
    except OSError:
        font = ImageFont.load_default(size=34)
    for i, line in enumerate(lines):
        draw.text((20, 20 + 60 * i), line, font=font, fill=0)
    return img


def test_parse_tsv_feeds_words_from_data() -> None:
    data = tb.parse_tsv(TSV)
    assert data["level"][0] == "1" and len(data["text"]) == 6  # header skipped, empty texts kept
    page = words_from_data(data, 300, 100)
    assert [w.text for w in page.words] == ["TOTAL", "12,50", "CB"]
    assert page.words[0].box == (10, 10, 90, 40)
    assert page.words[0].confidence == pytest.approx(0.915)
    assert [w.line_id for w in page.words] == [0, 0, 1]
    assert [w.block_id for w in page.words] == [1, 1, 2]
    assert page.words[2].box == (10, 60, 300, 90)  # clipped to the page


def test_parse_variables() -> None:
    assert tb.parse_variables("-c thresholding_method=2 --dpi 300 -c a=b=c") == {
        "thresholding_method": "2", "a": "b=c"}
    assert tb.parse_variables("") == {}


def test_make_ocr_selects_and_validates() -> None:
    assert isinstance(make_ocr(Settings(ocr_backend="pytesseract"), preprocess=False), TesseractOcr)
    with pytest.raises(ValueError, match="ocr_backend"):
        make_ocr(Settings(), backend="easyocr")


def test_make_ocr_falls_back_without_tesserocr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tb, "available", lambda: False)
    assert isinstance(make_ocr(Settings(ocr_backend="tesserocr"), psm=4), TesseractOcr)


@needs_tesserocr
def test_tesserocr_reads_words_with_boxes() -> None:
    img = text_image(["TOTAL 12,50 EUR", "MERCI"])
    ocr = tb.TesserocrOcr(languages="eng", preprocess=False)
    [page] = ocr([img])
    texts = [w.text for w in page.words]
    assert "TOTAL" in texts and "12,50" in texts and "MERCI" in texts
    assert (page.width, page.height) == img.size
    total = page.words[texts.index("TOTAL")]
    assert 10 <= total.box[0] < total.box[2] <= 300 and 10 <= total.box[1] < total.box[3] <= 80
    assert 0.5 < total.confidence <= 1.0
    line = {w.text: w.line_id for w in page.words}
    assert line["TOTAL"] == line["12,50"] != line["MERCI"]


@needs_tesserocr
def test_tesserocr_matches_the_program_page_structure() -> None:
    """Same TSV, same parser: identical words where the library is the program's version."""
    img = text_image(["CARREFOUR MARKET", "TOTAL 12,50 EUR", "CB 12,50"], (700, 220))
    a = TesseractOcr(languages="eng", preprocess=False)([img])[0]
    fast = tb.TesserocrOcr(languages="eng", preprocess=False)
    b = fast([img])[0]
    assert {"TOTAL", "12,50"} <= {w.text for w in b.words}
    if fast.version == TesseractOcr().version:
        assert [(w.text, w.box, w.line_id) for w in b.words] == [(w.text, w.box, w.line_id) for w in a.words]


@needs_tesserocr
def test_tesserocr_is_thread_safe() -> None:
    imgs = [text_image([f"TOTAL {n},50 EUR"]) for n in (11, 22, 33, 44)]
    ocr = tb.TesserocrOcr(languages="eng", preprocess=False)
    serial = [[w.text for w in p.words] for p in ocr(imgs)]
    got: dict[int, list[str]] = {}

    def work(i: int) -> None:
        got[i] = [w.text for w in ocr([imgs[i]])[0].words]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(imgs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [got[i] for i in range(len(imgs))] == serial
    assert ocr._idle.qsize() >= 1  # engines went back to the pool


@needs_tesserocr
def test_tesserocr_errors_are_ocr_failed() -> None:
    with pytest.raises(SocratextError) as e:
        tb.TesserocrOcr(languages="xx_no_such_language")
    assert e.value.code == OCR_FAILED
    with pytest.raises(SocratextError, match="unknown tesseract variable"):
        tb.TesserocrOcr(languages="eng", extra_config="-c no_such_variable_here=1")
    # an unusable configuration falls back to the program, which reports per receipt
    assert isinstance(make_ocr(Settings(ocr_backend="tesserocr"), languages="xx_no_such_language"),
                      TesseractOcr)


@needs_tesserocr
def test_tesserocr_blank_page_and_stage_wiring() -> None:
    stage = OcrStage(Settings(ocr_backend="tesserocr", ocr_second_pass=False, ocr_languages="eng"))
    assert isinstance(stage.ocr, tb.TesserocrOcr)
    [res] = stage([Image.new("RGB", (400, 600), "white")])
    assert res.page.words == [] and res.page.width > 0


@needs_tesserocr
def test_training_ocr_cache_takes_either_backend(tmp_path) -> None:
    """`ocr_cached` keys its cache on the engine's `config` (every option that changes the reading), which
    both backends have: training with SOCRATEXT_OCR_BACKEND=tesserocr used to fail on the first page."""
    from training.datasets.common import ocr_cached

    img = text_image(["TOTAL 12,50 EUR"])
    fast, slow = tb.TesserocrOcr(languages="eng"), TesseractOcr(languages="eng")
    assert fast.config == slow.config == "--psm 6 --oem 1 -c tessedit_do_invert=0"
    page, info = ocr_cached(img, fast, cache_dir=tmp_path)
    assert "TOTAL" in [w.text for w in page.words] and info["width"] == img.width
    other = TesseractOcr(languages="eng", extra_config="-c tessedit_do_invert=1")
    ocr_cached(img, other, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 2, "another reading option, another cache entry"
    again, _ = ocr_cached(img, slow, cache_dir=tmp_path)  # the same options: read from the cache
    assert [w.text for w in again.words] == [w.text for w in page.words]
    assert len(list(tmp_path.glob("*.json"))) == 2
