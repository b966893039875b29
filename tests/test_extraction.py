"""Stage 2 exists once (`socratext.extraction.extract_pages`): the CLI's `ExtractStage` and the worker's
`process_extract_batch` give the same receipts from the same OCR pages, and lose the same page when one
breaks the model. No Kafka: the worker's input is built with `streams.events.ocr_event`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from socratext.document import OcrPage, Word, WordLabel
from socratext.errors import INTERNAL, MODEL_FAILED
from socratext.extraction import ExtractFailure, extract_pages
from socratext.extractors.rules import RulesExtractor
from socratext.fields.assemble import assemble_receipt
from socratext.pipeline import ExtractStage
from socratext.settings import Settings
from streams import events as ev
from streams.agents.extract import ExtractDeps, process_extract_batch
from streams.topics import DEADLETTER, EXTRACTED

ENVELOPE = ("schema_version", "uploaded_at", "extracted_at")
LINES = [
    ["BOULANGERIE", "DU", "PORT"],
    ["12", "RUE", "DES", "LILAS", "75011", "PARIS"],
    ["25/11/2026", "10:42"],
    ["BAGUETTE", "1,20"],
    ["CROISSANT", "X2", "2,40"],
    ["TVA", "5,5%", "0,19"],
    ["TOTAL", "TTC", "3,60"],
]


def receipt_page(lines: list[list[str]]) -> OcrPage:
    words = [Word(t, (10 + 70 * i, 20 + 30 * n, 70 + 70 * i, 40 + 30 * n), 0.9137 + 0.01 * i, n)
             for n, line in enumerate(lines) for i, t in enumerate(line)]
    return OcrPage(words, 600, 30 * len(lines) + 60).as_exported()  # as the OCR stage hands it on


class Breaking(RulesExtractor):
    """The rules, except that any batch holding a word "BOOM" raises (a model that breaks on one page)."""

    def label(self, pages, images=None, rule_labels=None):  # type: ignore[override]
        if any(w.text == "BOOM" for p in pages for w in p.words):
            raise RuntimeError("CUDA error: device-side assert triggered")
        return super().label(pages, images, rule_labels=rule_labels)


def both_paths(extractor: RulesExtractor, pages: list[OcrPage], threshold: float = 0.5,
               ) -> tuple[list, list, list[ev.UploadEvent]]:
    """The same pages through the CLI's stage and through the worker: (stage results, worker events,
    the uploads the events came from)."""
    settings = Settings(review_threshold=threshold, known_values="")
    uploads = [ev.UploadEvent(f"r{i:02d}", "receipts", f"uploads/r{i:02d}.jpg", "2026-11-25T10:00:00.000Z")
               for i in range(len(pages))]
    # the OCR stage sends the rules' labels of each page (here every other one), which an extractor that
    # takes them uses instead of running the rules again: the same labels the CLI's extractor computes
    raws = [ev.dumps(ev.ocr_event(up, page, 1, 1, {"preprocess": 1.5, "ocr": 5.0},
                                  rule_labels=RulesExtractor().label([page])[0] if i % 2 == 0 else None))
            for i, (up, page) in enumerate(zip(uploads, pages, strict=True))]
    worker = process_extract_batch(raws, ExtractDeps(settings, extractor))
    stage = ExtractStage(extractor, settings).run(pages, [None] * len(pages), [u.receipt_id for u in uploads],
                                                  [u.source for u in uploads])
    return stage, worker, uploads


def without_timings(receipt: dict) -> dict:
    return {k: v for k, v in receipt.items() if k != "timings_ms" and k not in ENVELOPE}


@pytest.mark.parametrize("extractor", [RulesExtractor(), Breaking()], ids=["rules", "breaking-model"])
def test_cli_stage_and_worker_give_the_same_receipts(extractor: RulesExtractor) -> None:
    pages = [receipt_page(LINES), receipt_page(LINES[:3] + [["TOTAL", "9,99"]]), receipt_page(LINES[::-1])]
    stage, worker, _ = both_paths(extractor, pages)
    extracted = [o for o in worker if o.topic == EXTRACTED]
    assert len(stage) == len(extracted) == 3 and not [o for o in worker if o.topic == DEADLETTER]
    for rec, out in zip(stage, extracted, strict=True):
        cli = rec.export()
        assert out.key == rec.receipt_id
        assert without_timings(out.value) == without_timings(cli)
        # the same steps timed, after the OCR stage's in the worker's event
        assert list(cli["timings_ms"]) == ["model", "assemble"]
        assert list(out.value["timings_ms"]) == ["preprocess", "ocr", "model", "assemble"]
        assert rec.ocr is not None and rec.word_labels is not None
        assert len(rec.word_labels) == len(rec.ocr.words)
    assert stage[0].fields["total"].value == "3.60"  # a receipt with fields, not two empty ones compared


def test_a_page_that_breaks_the_model_is_lost_alone_on_both_paths() -> None:
    bad = receipt_page(LINES[:2] + [["BOOM"]])
    pages = [receipt_page(LINES), bad, receipt_page(LINES[:3] + [["TOTAL", "9,99"]])]
    stage, worker, uploads = both_paths(Breaking(), pages)
    failure = stage[1]
    assert isinstance(failure, ExtractFailure) and failure.step == "model"
    assert failure.code == MODEL_FAILED and "CUDA error" in failure.message
    extracted = {o.key: o.value for o in worker if o.topic == EXTRACTED}
    (dead,) = [o for o in worker if o.topic == DEADLETTER]
    assert dead.key == uploads[1].receipt_id
    assert (dead.value["code"], dead.value["message"]) == (failure.code, failure.message)
    for i in (0, 2):
        assert without_timings(extracted[uploads[i].receipt_id]) == without_timings(stage[i].export())
    # the library's all-or-nothing call raises the page's error
    with pytest.raises(RuntimeError, match="CUDA error"):
        ExtractStage(Breaking(), Settings(known_values=""))(pages, None, ["a", "b", "c"], [{}] * 3)


def test_extract_pages_isolates_assembly_failures_and_checks_label_counts() -> None:
    class Short(RulesExtractor):
        def label(self, pages, images=None, rule_labels=None):  # type: ignore[override]
            return [[WordLabel("O")] * (len(p.words) - ("SHORT" in [w.text for w in p.words]))
                    for p in pages]

    def assemble(page, labels, **kw):
        if kw["receipt_id"] == "b":
            raise KeyError("boom")
        return assemble_receipt(page, labels, **kw)

    pages = [receipt_page(LINES), receipt_page(LINES), receipt_page([["SHORT", "1,00"]])]
    out = extract_pages(Short(), pages, None, ["a", "b", "c"], [{}] * 3, review_threshold=0.5,
                        assemble=assemble)
    assert not isinstance(out[0], ExtractFailure) and out[0].receipt_id == "a"
    assert isinstance(out[1], ExtractFailure) and (out[1].step, out[1].code) == ("assemble", INTERNAL)
    assert isinstance(out[2], ExtractFailure) and out[2].code == MODEL_FAILED
    assert extract_pages(Short(), [], None, [], [], review_threshold=0.5) == []


def test_the_library_imports_neither_the_service_nor_training() -> None:
    """The core (everything but the command line) runs without `streams` or `training`: importing the
    extraction path pulls in neither."""
    code = ("import sys, json\n"
            "import socratext.pipeline, socratext.extraction, socratext.registry, socratext.storage\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'streams', 'training'})))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1]) == []
