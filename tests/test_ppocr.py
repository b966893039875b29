"""The PP-OCR engine (rapidocr + onnxruntime, weights from the wheel): words, boxes, rows, threads, CUDA.

The engine tests run the real networks on rendered receipts (setup.sh installs them); the geometry tests
feed hand-made segments and need nothing.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from PIL import Image, ImageDraw, ImageFont

from socratext.document import Word
from socratext.errors import OCR_FAILED, SocratextError
from socratext.ocr import make_ocr
from socratext.ocr import ppocr_backend as pb
from socratext.pipeline import OcrStage, key_fields_readable
from socratext.settings import Settings


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def receipt_image() -> Image.Image:
    """A small receipt whose rows have a label at the left and an amount far to the right, as printed."""
    img = Image.new("RGB", (760, 520), "white")
    draw = ImageDraw.Draw(img)
    font = _font(30)
    draw.text((200, 30), "BOULANGERIE DUPONT", font=font, fill="black")
    draw.text((40, 110), "Date 12/03/2024", font=font, fill="black")
    rows = [("Baguette", "1,20"), ("Croissant", "2,40"), ("TOTAL TTC", "3,60")]
    for i, (label, amount) in enumerate(rows):
        y = 200 + 70 * i
        draw.text((40, y), label, font=font, fill="black")
        draw.text((600, y), amount, font=font, fill="black")
    draw.text((250, 440), "MERCI", font=font, fill="black")
    return img


# --- geometry (no engine) ---

def _w(text: str, x0: int, y0: int, x1: int, y1: int) -> Word:
    return Word(text, (x0, y0, x1, y1), 0.9)


def test_rows_from_segments_merges_a_label_and_its_amount() -> None:
    # What the detector gives for "TOTAL TTC ..... 8,70" and the next row: separate segments, the amount's
    # segment a little lower (a tilted photo) and listed first.
    segments = [[_w("8,70", 600, 104, 680, 134)],
                [_w("TOTAL", 40, 100, 140, 130), _w("TTC", 150, 100, 210, 130)],
                [_w("CB", 40, 160, 90, 190)], [_w("8,70", 600, 161, 680, 191)]]
    page = pb.rows_from_segments(segments, 800, 300)
    assert [w.text for w in page.words] == ["TOTAL", "TTC", "8,70", "CB", "8,70"]
    assert [w.line_id for w in page.words] == [0, 0, 0, 1, 1]
    lines = [" ".join(page.words[i].text for i in line) for line in page.lines()]
    assert lines == ["TOTAL TTC 8,70", "CB 8,70"]


def test_rows_from_segments_keeps_stacked_rows_apart() -> None:
    # Two segments one above the other that overlap horizontally are two rows, however close.
    segments = [[_w("ENTERPRISE", 40, 10, 300, 40)],
                [_w("SDN", 40, 44, 120, 74), _w("BHD", 130, 44, 200, 74)]]
    page = pb.rows_from_segments(segments, 400, 100)
    assert [w.line_id for w in page.words] == [0, 1, 1]
    assert pb.rows_from_segments([], 10, 10).words == []


def test_rows_from_segments_merges_a_name_found_between_a_rows_prices() -> None:
    # The detector can return a row's count and prices as one line whose extent covers the article name,
    # and the name as a line of its own, at the same height: their words do not collide, so one row.
    segments = [[_w("1", 94, 671, 117, 703), _w("22.89", 516, 669, 604, 704),
                 _w("22.89", 694, 669, 782, 704)],
                [_w("Magret", 181, 670, 284, 707), _w("de", 305, 670, 333, 707),
                 _w("Canard", 355, 670, 457, 707)]]
    page = pb.rows_from_segments(segments, 800, 800)
    assert [" ".join(page.words[i].text for i in line) for line in page.lines()] == [
        "1 Magret de Canard 22.89 22.89"]
    # words printed over each other at one height stay two lines (a stamp over the text, a duplicate)
    stamp = [[_w("PAYE", 100, 670, 200, 705)], [_w("MENU", 120, 672, 220, 704)]]
    assert len(list(pb.rows_from_segments(stamp, 800, 800).lines())) == 2


def test_page_from_result_splits_spaced_words_and_clamps_boxes() -> None:
    result = SimpleNamespace(word_results=(
        (("Total", 0.99, [[10, 10], [90, 10], [90, 40], [10, 40]]),),
        (("8.70 RM", 0.8, [[300, 12], [440, 12], [440, 42], [300, 42]]),),
        (("", 0.5, [[0, 0], [1, 0], [1, 1], [0, 1]]), ("x", 0.5, None)),
        (("Merci", 1.2, [[-5, 60], [520, 60], [520, 90], [-5, 90]]),),
    ))
    page = pb.page_from_result(result, 500, 100)
    assert [w.text for w in page.words] == ["Total", "8.70", "RM", "Merci"]
    assert [w.line_id for w in page.words] == [0, 0, 0, 1]
    total, amount, unit, merci = page.words
    assert amount.box[0] == 300 and amount.box[2] < unit.box[0] and unit.box[2] == 440
    assert merci.box == (0, 60, 500, 90) and merci.confidence == 1.0
    assert pb.page_from_result(SimpleNamespace(word_results=None), 5, 5).words == []


def test_quad_to_box_takes_the_envelope() -> None:
    assert pb.quad_to_box([[10.2, 5.5], [50.9, 4.1], [51, 20], [9.8, 21.3]], 40, 100) == (9, 4, 40, 22)


# --- the engine ---

def test_ppocr_reads_a_rendered_receipt_into_rows() -> None:
    ocr = make_ocr(Settings(ocr_backend="ppocr"), preprocess=False)
    assert isinstance(ocr, pb.PpOcr) and ocr.device == "cpu"
    [page] = ocr([receipt_image()])
    texts = [w.text for w in page.words]
    assert "BOULANGERIE" in texts and "DUPONT" in texts and "MERCI" in texts
    for w in page.words:
        x0, y0, x1, y1 = w.box
        assert 0 <= x0 < x1 <= page.width and 0 <= y0 < y1 <= page.height
        assert 0.0 <= w.confidence <= 1.0
    lines = [" ".join(page.words[i].text for i in line) for line in page.lines()]
    # Each label is on one line with its amount, although the detector returns them apart.
    assert any(line.startswith("TOTAL") and line.endswith("3,60") for line in lines), lines
    assert any(line.startswith("Baguette") and line.endswith("1,20") for line in lines), lines
    assert key_fields_readable(page) == 2  # the date and the total line: no second pass needed
    total = page.words[texts.index("TOTAL")]
    assert total.box[0] < 80 and 190 < total.box[1] < 360  # where it was drawn


def test_ocr_stage_uses_the_engines_own_preprocessing() -> None:
    stage = OcrStage(Settings(ocr_backend="ppocr", ocr_second_pass=False))
    small = receipt_image().resize((380, 260))
    [res] = stage([small])
    # PP-OCR resizes by itself: the image it read (and its boxes refer to) is not enlarged as Tesseract's.
    assert res.image.size == small.size and (res.page.width, res.page.height) == small.size
    assert res.page.words


def test_one_engine_per_thread() -> None:
    ocr = pb.PpOcr(settings=Settings(), preprocess=False)
    borrowed: list[object] = []
    real = ocr._acquire
    barrier = threading.Barrier(2)

    def acquire() -> object:
        engine = real()
        borrowed.append(engine)
        barrier.wait(timeout=60)  # both threads hold an engine at the same time
        return engine

    ocr._acquire = acquire  # type: ignore[method-assign]
    img = receipt_image()
    pages: list[list[str]] = []
    threads = [threading.Thread(target=lambda: pages.append([w.text for w in ocr([img])[0].words]))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(borrowed) == 2 and borrowed[0] is not borrowed[1]
    assert len(pages) == 2 and pages[0] == pages[1]
    # Both went back to the pool: the next two reads reuse them, no third engine is built.
    idle = [real(), real()]
    assert {id(e) for e in idle} == {id(e) for e in borrowed}


def test_engine_threads_are_set_not_inherited() -> None:
    ocr = pb.PpOcr(settings=Settings(ocr_intra_op_threads=1), preprocess=False)
    params = ocr._params()
    assert params["EngineConfig.onnxruntime.intra_op_num_threads"] == 1
    assert params["EngineConfig.onnxruntime.inter_op_num_threads"] == 1
    assert params["Global.use_cls"] is False
    engine = ocr._acquire()
    assert engine.cfg.EngineConfig.onnxruntime.intra_op_num_threads == 1


def test_cuda_asked_where_it_cannot_run_says_so(monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(pb, "cuda_provider_available", lambda: False)
    ocr = pb.PpOcr(settings=Settings(device="cuda"), preprocess=False)
    assert ocr.device == "cpu" and "CUDAExecutionProvider" in ocr.cuda_unavailable
    assert any(r.levelname == "ERROR" and "device=cuda" in r.getMessage() for r in caplog.records)
    assert "EngineConfig.onnxruntime.use_cuda" not in ocr._params()


def test_cuda_is_asked_of_onnxruntime_when_it_can_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pb, "cuda_provider_available", lambda: True)
    monkeypatch.setattr(pb.PpOcr, "_new_engine", lambda self: object())  # no GPU here to start one on
    ocr = pb.PpOcr(settings=Settings(device="cuda"), preprocess=False)
    assert ocr.device == "cuda" and ocr.cuda_unavailable == ""
    params = ocr._params()
    assert params["EngineConfig.onnxruntime.use_cuda"] is True
    assert params["EngineConfig.onnxruntime.cuda_ep_cfg.cudnn_conv_algo_search"] == "HEURISTIC"


def test_engine_failure_is_the_receipts_error(monkeypatch: pytest.MonkeyPatch) -> None:
    ocr = pb.PpOcr(settings=Settings(), preprocess=False)

    class Broken:
        def __call__(self, *a: object, **k: object) -> None:
            raise RuntimeError("onnxruntime exploded")

    monkeypatch.setattr(ocr, "_acquire", lambda: Broken())
    with pytest.raises(SocratextError) as exc:
        ocr([receipt_image()])
    assert exc.value.code == OCR_FAILED and "exploded" in exc.value.message


def test_worker_metric_shows_cuda_asked_and_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.agents.ocr import build_ocr_deps
    from streams.metrics import StreamMetrics

    monkeypatch.setattr(pb, "cuda_provider_available", lambda: False)
    metrics = StreamMetrics()
    build_ocr_deps(Settings(ocr_backend="ppocr", device="cuda"), metrics)
    assert metrics.value("socratext_ocr_engine_info", backend="ppocr", requested="cuda", device="cpu") == 1
    build_ocr_deps(Settings(ocr_backend="ppocr"), metrics)  # the CPU asked for: nothing amiss
    assert metrics.value("socratext_ocr_engine_info", backend="ppocr", requested="cuda", device="cpu") == 0
    assert metrics.value("socratext_ocr_engine_info", backend="ppocr", requested="cpu", device="cpu") == 1


def test_training_ocr_cache_reads_with_pp_ocr_and_maps_true_boxes(tmp_path) -> None:
    """Training reads its pages with the configured engine (PP-OCR by default), so a model learns on the
    words it is given in service; the transform returned maps a true box onto those words."""
    from training.datasets.common import map_box, ocr_cached

    big = receipt_image().resize((1520, 1040))  # larger than ppocr_max_side=1000: PP-OCR shrinks it
    engine = pb.PpOcr(settings=Settings(ppocr_max_side=1000))
    page, info = ocr_cached(big, engine, cache_dir=tmp_path)
    assert info["scale"] == pytest.approx(1000 / 1520, abs=0.01) and (info["out_w"], info["out_h"]) == (
        page.width, page.height)
    total = next(w for w in page.words if "TOTAL" in w.text.upper())
    true_box = (80, 400 + 140 * 2, 330, 460 + 140 * 2)  # where TOTAL TTC was drawn, in the big image
    mapped = map_box(true_box, info)
    assert mapped[0] - 15 < total.box[0] < mapped[2] and mapped[1] - 15 < total.box[1] < mapped[3]
    again, _ = ocr_cached(big, engine, cache_dir=tmp_path)
    assert [w.text for w in again.words] == [w.text for w in page.words]
    assert len(list(tmp_path.glob("*.json"))) == 1
