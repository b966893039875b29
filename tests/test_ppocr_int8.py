"""PP-OCR's int8 detector: built from the wheel's network into a cache, once, and reading what the float
network reads (socratext/ocr/ppocr_int8.py). The engine tests run the real networks (setup.sh installs
them) on the rendered receipt of tests/test_ppocr.py."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from socratext.errors import OCR_FAILED, SocratextError
from socratext.ocr import ppocr_backend as pb
from socratext.ocr import ppocr_int8 as q
from socratext.settings import Settings
from tests.test_ppocr import receipt_image


def _words(ocr: pb.PpOcr) -> list[str]:
    return [w.text for w in ocr([receipt_image()])[0].words]


def test_the_int8_detector_is_built_into_the_cache_and_runs(tmp_path: Path) -> None:
    ocr = pb.PpOcr(settings=Settings(ppocr_model_cache=tmp_path), preprocess=False)
    assert ocr.detector == "int8" and ocr.detector_path is not None
    assert ocr.detector_path.parent == tmp_path and ocr.detector_path.exists()
    assert q.RECIPE in ocr.detector_path.name  # a new recipe builds a new file
    assert "det=PP-OCRv6-small/int8" in ocr.config  # OCR caches keyed on the config tell the two apart
    engine = ocr._acquire()
    assert engine.cfg.Det.model_path == str(ocr.detector_path)
    float_ocr = pb.PpOcr(settings=Settings(ppocr_model_cache=tmp_path, ppocr_detector="float"),
                         preprocess=False)
    assert float_ocr.detector_path is None and "Det.model_path" not in float_ocr._params()
    # The quantised network finds the same text lines: the same words come out.
    assert _words(ocr) == _words(float_ocr)
    assert {"BOULANGERIE", "DUPONT", "TOTAL", "3,60", "MERCI"} <= set(_words(ocr))


def test_a_cached_detector_is_reused_not_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = pb.PpOcr(settings=Settings(ppocr_model_cache=tmp_path), preprocess=False).detector_path
    assert first is not None
    built_at = first.stat().st_mtime_ns

    def no_build(*_a: object) -> None:
        raise AssertionError("rebuilt although cached")

    monkeypatch.setattr(q, "build", no_build)
    again = pb.PpOcr(settings=Settings(ppocr_model_cache=tmp_path), preprocess=False).detector_path
    assert again == first and first.stat().st_mtime_ns == built_at


def test_another_source_network_gets_another_file(tmp_path: Path) -> None:
    a, b = tmp_path / "det.onnx", tmp_path / "other" / "det.onnx"
    b.parent.mkdir()
    a.write_bytes(b"network one")
    b.write_bytes(b"network two")
    # A new rapidocr wheel (another detector) must not reuse the int8 copy of the old one.
    assert q.cached_path(tmp_path, a) != q.cached_path(tmp_path, b)
    assert q.cached_path(tmp_path, a) == q.cached_path(tmp_path, a)


def test_workers_starting_together_build_it_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds: list[Path] = []

    def slow_build(source: Path, target: Path, calibration: list[object]) -> None:
        builds.append(target)
        assert calibration  # the bundled sample receipts, prepared as the engine reads them
        time.sleep(0.5)  # the other starter arrives while this build runs
        target.write_bytes(b"int8")

    monkeypatch.setattr(q, "build", slow_build)
    params = {"Det.limit_type": "min", "Det.limit_side_len": 480}
    paths: list[Path] = []
    threads = [threading.Thread(target=lambda: paths.append(q.int8_detector(tmp_path, params, lambda i: i)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(builds) == 1 and len(paths) == 2 and paths[0] == paths[1] == builds[0]


def test_without_onnx_the_engine_says_how_to_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)  # as if `onnx` were not installed
    with pytest.raises(SocratextError) as exc:
        pb.PpOcr(settings=Settings(ppocr_model_cache=tmp_path), preprocess=False)
    assert exc.value.code == OCR_FAILED
    assert "onnx" in exc.value.message and "SOCRATEXT_PPOCR_DETECTOR=float" in exc.value.message
    assert not list(tmp_path.glob("*.onnx"))  # nothing half-written left behind


def test_a_gpu_runs_the_float_detector_and_batches_recognition(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    monkeypatch.setattr(pb, "cuda_provider_available", lambda: True)
    monkeypatch.setattr(pb.PpOcr, "_new_engine", lambda self: object())  # no GPU here to start one on
    ocr = pb.PpOcr(settings=Settings(device="cuda", ppocr_model_cache=tmp_path), preprocess=False)
    assert ocr.detector == "float" and ocr.detector_path is None and not list(tmp_path.iterdir())
    assert ocr._params()["Rec.rec_batch_num"] == pb.REC_BATCH_CUDA


def test_recognition_reads_one_line_per_call_on_the_cpu(tmp_path: Path) -> None:
    ocr = pb.PpOcr(settings=Settings(ppocr_model_cache=tmp_path, ppocr_detector="float"), preprocess=False)
    params = ocr._params()
    assert params["Rec.rec_batch_num"] == pb.REC_BATCH_CPU == 1
    assert params["Det.limit_type"] == "min" and params["Det.limit_side_len"] == 480
    assert ocr._acquire().cfg.Rec.rec_batch_num == 1
    batched = pb.PpOcr(settings=Settings(ppocr_rec_batch=6, ppocr_detector="float"), preprocess=False)
    assert batched._params()["Rec.rec_batch_num"] == 6 and "rec_batch=6" in batched.config


def test_short_lines_are_padded_only_to_the_minimum_recognition_width(tmp_path: Path) -> None:
    """rapidocr pads every text line to 320 px before recognition; the engine pads only to
    `ppocr_rec_min_width`, and the rendered receipt reads the same words either way."""
    words, widths = {}, {}
    for min_width in (320, 96):
        ocr = pb.PpOcr(settings=Settings(ppocr_model_cache=tmp_path, ppocr_rec_min_width=min_width),
                       preprocess=False)
        assert f"rec_min_width={min_width}" in ocr.config  # the OCR caches tell the two apart
        engine = ocr._acquire()
        rec = engine._load_rec_model()
        seen: list[int] = []
        run = rec.session.__call__

        def recording(x: object, run: object = run, seen: list[int] = seen) -> object:
            seen.append(x.shape[-1])  # type: ignore[attr-defined]
            return run(x)  # type: ignore[operator]

        rec.session = recording
        ocr._release(engine)
        words[min_width] = _words(ocr)
        widths[min_width] = seen
    assert min(widths[320]) == 320  # rapidocr's own padding
    assert min(widths[96]) == 96 < 320  # a short line ("3,60") is no longer padded to 320
    assert words[96] == words[320]
    assert {"TOTAL", "3,60", "MERCI"} <= set(words[96])
