"""Preprocessing and Tesseract OCR: deskew, resize, words/boxes/lines on rendered and real receipts."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from socratext import errors
from socratext.errors import SocratextError
from socratext.ocr import TesseractOcr, estimate_skew, preprocess, preprocess_with_info, words_from_data
from socratext.ocr.preprocess import deskew, working_scale
from socratext.settings import Settings

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
SROIE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sroie"

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract not installed")

LINES = [
    "SUPERMARCHÉ DU CENTRE",
    "12 rue de la République 69002 Lyon",
    "Baguette tradition 1,20",
    "Fromage de chèvre 3,45",
    "Café moulu 4,99",
    "TOTAL TTC 9,64 EUR",
    "Merci de votre visite",
]


def render(lines: list[str], size: int = 30, width: int = 900) -> tuple[Image.Image, list[list[tuple]]]:
    """Black text on white; also the pixel box of every word, line by line (the ground truth)."""
    font = ImageFont.truetype(str(FONT), size)
    img = Image.new("RGB", (width, 80 + len(lines) * int(size * 1.9)), "white")
    draw = ImageDraw.Draw(img)
    boxes = []
    for i, line in enumerate(lines):
        x, y = 50, 40 + i * int(size * 1.9)
        line_boxes = []
        for word in line.split():
            line_boxes.append((word, draw.textbbox((x, y), word, font=font)))
            draw.text((x, y), word, font=font, fill="black")
            x += draw.textlength(word + " ", font=font)
        boxes.append(line_boxes)
    return img, boxes


@pytest.fixture(scope="module")
def receipt_text():
    if not FONT.exists():
        pytest.skip("DejaVu font not installed")
    return render(LINES)


# --- pure parts ---------------------------------------------------------------------------------------

def test_words_from_data_builds_running_line_ids():
    data = {
        "level": [1, 4, 5, 5, 5, 5, 5, 5],
        "block_num": [0, 1, 1, 1, 1, 2, 2, 2],
        "par_num": [0, 1, 1, 1, 1, 1, 1, 2],
        "line_num": [0, 1, 1, 1, 2, 1, 1, 1],
        "text": ["", "", "TOTAL", "  ", "12,50", "TVA", "20%", "Merci"],
        "conf": [-1, -1, 96.5, 10, 88, 101, 40, 0],
        "left": [0, 0, 10, 60, 10, 10, 60, 10],
        "top": [0, 0, 5, 5, 40, 80, 80, 120],
        "width": [0, 0, 40, 5, 50, 30, 40, 990],
        "height": [0, 0, 20, 20, 20, 20, 20, 20],
    }
    page = words_from_data(data, width=200, height=150)
    assert [w.text for w in page.words] == ["TOTAL", "12,50", "TVA", "20%", "Merci"]
    assert [w.line_id for w in page.words] == [0, 1, 2, 2, 3]
    assert [w.block_id for w in page.words] == [1, 1, 2, 2, 2]
    assert page.words[0].confidence == pytest.approx(0.965)
    assert page.words[2].confidence == 1.0  # clamped
    assert page.words[0].box == (10, 5, 50, 25)
    assert page.words[4].box == (10, 120, 200, 140)  # clamped to the page
    assert page.lines() == [[0], [1], [2, 3], [4]]


def test_working_scale():
    assert working_scale(3024, 4032, 1800) == pytest.approx(1800 / 4032)  # phone photo
    assert working_scale(800, 4000, 1800) == pytest.approx(600 / 800)  # long roll: keep text size
    assert working_scale(500, 4000, 1800) == 1.0
    assert working_scale(400, 900, 1800, max_upscale=1.5) == pytest.approx(1.5)
    assert working_scale(1200, 1700, 1800, max_upscale=1.5) == pytest.approx(1800 / 1700)


def test_preprocess_gives_grayscale_at_working_size(receipt_text):
    img, _ = receipt_text
    big = img.resize((img.width * 3, img.height * 3))
    out, info = preprocess_with_info(big, Settings(ocr_max_side=2400, ocr_deskew=False))
    assert out.mode == "L"
    assert max(out.size) == 2400
    assert info.angle == 0.0 and info.scale == pytest.approx(2400 / max(big.size), abs=1e-4)
    out = preprocess(big, Settings(ocr_max_side=1000, ocr_deskew=False))
    assert min(out.size) == 600  # the short side is not squeezed below MIN_SHORT_SIDE
    small = img.resize((img.width // 3, img.height // 3))
    out = preprocess(small, Settings(ocr_max_side=1800, ocr_deskew=False))
    assert out.width == round(small.width * 1.5)  # moderate upscale only


@pytest.mark.parametrize("angle", [-3.0, -1.2, 2.0, 4.0])
def test_deskew_recovers_a_known_rotation(receipt_text, angle):
    img, _ = receipt_text
    tilted = img.convert("L").rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    assert estimate_skew(tilted) == pytest.approx(angle, abs=0.3)
    assert abs(estimate_skew(deskew(tilted, estimate_skew(tilted)))) <= 0.2
    _, info = preprocess_with_info(tilted, Settings(ocr_max_side=1200, ocr_deskew=True))
    assert info.angle == pytest.approx(angle, abs=0.3)


def test_map_box_follows_resize_and_deskew():
    img = Image.new("L", (800, 1200), 255)
    img.paste(0, (300, 500, 500, 540))  # a black bar, like a line of text
    tilted = img.rotate(3.0, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    arr_in = np.asarray(tilted) < 128
    ys, xs = np.nonzero(arr_in)
    box_in = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    out, info = preprocess_with_info(tilted, Settings(ocr_max_side=1000, ocr_deskew=True))
    assert info.angle == pytest.approx(3.0, abs=0.3) and info.source_size == tilted.size
    ys, xs = np.nonzero(np.asarray(out) < 128)
    dark = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    mapped = info.map_box(box_in)
    # the mapped envelope contains the straightened bar, with a margin from the tilt of its box
    assert mapped[0] <= dark[0] + 2 and mapped[1] <= dark[1] + 2
    assert mapped[2] >= dark[2] - 2 and mapped[3] >= dark[3] - 2
    assert (mapped[2] - mapped[0]) < 1.2 * (dark[2] - dark[0])
    assert info.map_box((0, 0, 10, 10)) != (0, 0, 10, 10)
    plain = preprocess_with_info(img, Settings(ocr_max_side=900, ocr_deskew=False))[1]
    assert plain.map_box((300, 500, 500, 540)) == (225, 375, 375, 405)


def test_straight_text_is_left_alone(receipt_text):
    img, _ = receipt_text
    out, info = preprocess_with_info(img, Settings(ocr_max_side=900, ocr_deskew=True))
    assert info.angle == 0.0 and out.size == img.size


def test_blank_page_has_no_skew():
    assert estimate_skew(Image.new("L", (300, 500), 255)) == 0.0


# --- Tesseract ------------------------------------------------------------------------------------------

def _overlap(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / area if area else 0.0


@needs_tesseract
def test_ocr_reads_french_text_with_boxes_and_lines(receipt_text):
    img, truth = receipt_text
    # no resize: boxes stay in the rendered image's pixels, so they can be compared with the truth
    ocr = TesseractOcr(settings=Settings(ocr_max_side=0, ocr_deskew=False))
    [page] = ocr([img])
    assert (page.width, page.height) == img.size
    found = {w.text for w in page.words}
    expected = [word for line in truth for word, _ in line]
    hits = [w for w in expected if w in found]
    assert len(hits) >= 0.9 * len(expected), sorted(set(expected) - found)
    assert {"SUPERMARCHÉ", "République", "chèvre", "Café", "TOTAL", "9,64"} <= found

    by_text = {w.text: w for w in page.words}
    ocr_counts = Counter(w.text for w in page.words)
    truth_counts = Counter(expected)
    line_of_truth = []
    for i, line in enumerate(truth):
        for word, box in line:
            if ocr_counts[word] == 1 and truth_counts[word] == 1:  # unambiguous words only
                w = by_text[word]
                assert _overlap(w.box, box) > 0.5, (word, w.box, box)
                assert 0.3 < w.confidence <= 1.0
                line_of_truth.append((i, w.line_id))
    # words of one rendered line share a line id; different lines have different ids, in reading order
    mapping: dict[int, int] = {}
    for truth_line, line_id in line_of_truth:
        assert mapping.setdefault(truth_line, line_id) == line_id
    assert len(set(mapping.values())) == len(mapping)
    assert [mapping[k] for k in sorted(mapping)] == sorted(mapping.values())
    assert len(mapping) >= len(truth) - 1

    for box in page.norm_boxes():
        assert all(0 <= v <= 1000 for v in box)
        assert box[0] <= box[2] and box[1] <= box[3]


@needs_tesseract
def test_ocr_boxes_refer_to_the_preprocessed_image(receipt_text):
    img, _ = receipt_text
    tilted = img.rotate(2.5, resample=Image.Resampling.BICUBIC, expand=True, fillcolor="white")
    ocr = TesseractOcr(settings=Settings(ocr_max_side=1200, ocr_deskew=True))
    [(page, seen)] = ocr.run([tilted])
    assert (page.width, page.height) == seen.size
    assert max(seen.size) >= 1200  # grown to the working size, then the deskew canvas expansion
    assert "TOTAL" in {w.text for w in page.words}
    for w in page.words:
        assert 0 <= w.box[0] <= w.box[2] <= page.width and 0 <= w.box[1] <= w.box[3] <= page.height


@needs_tesseract
def test_ocr_of_a_blank_page_is_empty():
    [page] = TesseractOcr()([Image.new("RGB", (400, 600), "white")])
    assert page.words == []
    assert page.width > 0 and page.height > 0


@needs_tesseract
def test_tesseract_failure_raises_ocr_failed():
    with pytest.raises(SocratextError) as exc:
        TesseractOcr(languages="xx_no_such_language")([Image.new("RGB", (50, 50), "white")])
    assert exc.value.code == errors.OCR_FAILED


@needs_tesseract
@pytest.mark.sroie
@pytest.mark.slow
@pytest.mark.skipif(not (SROIE / "img").is_dir(), reason="../shared/data/sroie absent")
def test_word_recall_on_real_receipts():
    """The same measure as bench/bench_ocr.py (kept inline: tests must not depend on the bench package)."""
    from socratext.imaging import load_image_file

    stems = sorted(p.stem for p in (SROIE / "img").glob("*.jpg"))
    train = stems[: int(0.8 * len(stems))]
    matched = total = 0
    ocr = TesseractOcr()
    for stem in (train[0], train[len(train) // 3], train[2 * len(train) // 3]):
        truth: Counter[str] = Counter()
        for row in (SROIE / "box" / f"{stem}.csv").read_text(encoding="utf-8", errors="replace").splitlines():
            parts = row.split(",", 8)
            if len(parts) == 9:
                truth.update(t.lower() for t in parts[8].split())
        [page] = ocr(load_image_file(SROIE / "img" / f"{stem}.jpg"))
        matched += sum((truth & Counter(w.text.lower() for w in page.words)).values())
        total += sum(truth.values())
    assert total > 100
    # Measured 0.699 with the defaults (tesseract 5.3); the untouched image with psm 3 gets 0.622.
    # SROIE's transcriptions have their own typos and keep "Date:" as one token, so 0.8 is out of reach.
    assert matched / total > 0.65
