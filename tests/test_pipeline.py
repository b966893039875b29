"""The OCR stage's second pass: only for receipts whose date or total line was not read, if it helps."""

from __future__ import annotations

from PIL import Image

from socratext.document import OcrPage, Word
from socratext.ocr import preprocess
from socratext.pipeline import OcrStage, key_fields_readable
from socratext.settings import Settings


def page_of(*lines: str) -> OcrPage:
    words = [Word(t, (10 * i, 20 * n, 10 * i + 9, 20 * n + 15), 0.9, line_id=n)
             for n, line in enumerate(lines) for i, t in enumerate(line.split())]
    return OcrPage(words, 400, 20 * len(lines) + 20)


GOOD = page_of("BOULANGERIE PAUL", "Le 25/11/2026 14:32", "2 CROISSANT 2,40", "TOTAL TTC 2,40 EUR")
NO_DATE = page_of("BOULANGERIE PAUL", "Le 2S/1l/2O26 14:32", "2 CROISSANT 2,40", "TOTAL TTC 2,40 EUR")
NOTHING = page_of("B0ULANGER1E", "~~~ ,,,", "T0TAI")


def test_key_fields_readable_counts_date_and_total_line() -> None:
    assert key_fields_readable(GOOD) == 2
    assert key_fields_readable(NO_DATE) == 1
    assert key_fields_readable(NOTHING) == 0
    # an amount without a total keyword is not a total line
    assert key_fields_readable(page_of("25/11/2026", "2 CROISSANT 2,40")) == 1


class FakeOcr:
    """Returns the queued pages in order and records the images it was given."""

    def __init__(self, *pages: OcrPage) -> None:
        self.pages = list(pages)
        self.seen: list[Image.Image] = []

    def prepare(self, img: Image.Image) -> Image.Image:
        return preprocess(img)

    def __call__(self, images: list[Image.Image]) -> list[OcrPage]:
        self.seen.extend(images)
        return [self.pages.pop(0)]


class OtherFakeOcr(FakeOcr):
    """Another engine, with its own way of preparing the image (as PP-OCR, which does not upscale)."""

    def prepare(self, img: Image.Image) -> Image.Image:
        return img.convert("L")


def stage_with(fake: FakeOcr, second_pass: bool = True) -> OcrStage:
    stage = OcrStage(Settings(ocr_second_pass=second_pass))
    stage.ocr = fake  # type: ignore[assignment]
    return stage


IMG = Image.new("RGB", (400, 300), "white")


def test_readable_receipt_is_read_once() -> None:
    fake = FakeOcr(GOOD)
    res = stage_with(fake)([IMG])[0]
    assert res.page is GOOD and len(fake.seen) == 1
    assert "ocr_second_pass" not in res.timings_ms


def test_second_pass_wins_when_it_reads_more() -> None:
    fake = FakeOcr(NO_DATE, GOOD)
    res = stage_with(fake)([IMG])[0]
    assert len(fake.seen) == 2 and res.page is GOOD
    assert res.image is fake.seen[1], "the model gets the image the winning boxes refer to"
    assert res.timings_ms["ocr_second_pass"] >= 0


def test_second_pass_is_dropped_when_it_reads_less() -> None:
    fake = FakeOcr(NO_DATE, NOTHING)
    res = stage_with(fake)([IMG])[0]
    assert len(fake.seen) == 2 and res.page is NO_DATE and res.image is fake.seen[0]


def test_second_pass_by_another_engine_reads_the_image_its_own_way() -> None:
    first, second = FakeOcr(NO_DATE), OtherFakeOcr(GOOD)
    stage = stage_with(first)
    stage.second_ocr = second  # type: ignore[assignment]
    res = stage([IMG])[0]
    assert res.page is GOOD and res.second_engine and not res.sharpened
    assert len(first.seen) == 1 and len(second.seen) == 1
    assert second.seen[0].size == IMG.size and res.image is second.seen[0]


def test_second_engine_wins_ties_and_is_not_asked_when_the_first_read_enough() -> None:
    first, second = FakeOcr(NO_DATE), OtherFakeOcr(NO_DATE)
    stage = stage_with(first)
    stage.second_ocr = second  # type: ignore[assignment]
    res = stage([IMG])[0]
    assert res.second_engine and res.image is second.seen[0]
    first, second = FakeOcr(GOOD), OtherFakeOcr(GOOD)
    stage = stage_with(first)
    stage.second_ocr = second  # type: ignore[assignment]
    assert not stage([IMG])[0].second_engine and second.seen == []


def test_second_pass_backend_setting_builds_the_other_engine() -> None:
    from socratext.ocr.ppocr_backend import PpOcr

    stage = OcrStage(Settings(ocr_backend="tesserocr", ocr_second_pass_backend="ppocr"))
    assert isinstance(stage.second_ocr, PpOcr)
    assert OcrStage(Settings()).second_ocr is None


def test_second_pass_can_be_turned_off() -> None:
    fake = FakeOcr(NO_DATE)
    res = stage_with(fake, second_pass=False)([IMG])[0]
    assert len(fake.seen) == 1 and res.page is NO_DATE
