"""The two stages' processing functions with fakes (no Kafka, no S3, no Tesseract), plus the metrics
server, the JSON log format and the Faust app wiring."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import pytest
from PIL import Image

from socratext.document import OcrPage, Word, WordLabel
from socratext.errors import (
    INTERNAL,
    MALFORMED_EVENT,
    MODEL_FAILED,
    NOT_AN_IMAGE,
    OBJECT_NOT_FOUND,
    OCR_FAILED,
    STORAGE_UNAVAILABLE,
    TRUNCATED_IMAGE,
    SocratextError,
)
from socratext.fields.assemble import assemble_receipt
from socratext.imaging import load_images
from socratext.settings import Settings
from streams import events as ev
from streams.agents import Origin, OutEvent, publish
from streams.agents.extract import ExtractDeps, process_extract_batch
from streams.agents.ocr import OcrDeps, process_ocr_event
from streams.metrics import MetricsServer, StreamMetrics
from streams.topics import DEADLETTER, EXTRACTED, OCR, REVIEW, load_schema

SETTINGS = Settings(s3_allowed_buckets="receipts", review_threshold=0.75)


def jpeg(size: tuple[int, int] = (60, 90), color: str = "white") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


def pdf(n: int) -> bytes:
    pages = [Image.new("RGB", (100, 150), "black" if i == 1 else "white") for i in range(n)]
    buf = io.BytesIO()
    pages[0].save(buf, "PDF", save_all=True, append_images=pages[1:])
    return buf.getvalue()


class FakeStore:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_bytes(self, bucket: str, key: str, max_bytes: int) -> bytes:
        if key not in self.objects:
            raise SocratextError(OBJECT_NOT_FOUND, f"s3://{bucket}/{key} does not exist")
        return self.objects[key]


@dataclass
class FakeOcrResult:
    page: OcrPage
    timings_ms: dict[str, float] = field(default_factory=lambda: {"ocr": 1.0})


def fake_ocr(images: list[Image.Image]) -> list[FakeOcrResult]:
    """'Reads' the image size as text; a black image makes the OCR engine fail."""
    out = []
    for img in images:
        if sum(img.convert("RGB").getpixel((5, 5))) < 100:
            raise RuntimeError("tesseract crashed")
        words = [Word("TOTAL", (1, 1, 20, 10), 0.95, 0), Word(f"{img.width},00", (30, 1, 50, 10), 0.9, 0)]
        out.append(FakeOcrResult(OcrPage(words, img.width, img.height)))
    return out


def ocr_deps(objects: dict[str, bytes], metrics: StreamMetrics | None = None) -> OcrDeps:
    return OcrDeps(SETTINGS, FakeStore(objects).get_bytes, load_images, fake_ocr, metrics)


def upload(rid: str, key: str) -> bytes:
    return ev.dumps({"schema_version": 1, "receipt_id": rid, "bucket": "receipts", "key": key,
                     "uploaded_at": "2026-11-25T10:00:00Z"})


def by_topic(outs: list[OutEvent], topic: str) -> list[OutEvent]:
    return [o for o in outs if o.topic == topic]


# --- stage 1 --------------------------------------------------------------------------------------------

def test_ocr_stage_good_receipt() -> None:
    m = StreamMetrics()
    (out,) = process_ocr_event(upload("r1", "uploads/r1.jpg"), ocr_deps({"uploads/r1.jpg": jpeg()}, m))
    assert out.topic == OCR and out.key == "r1"
    jsonschema.validate(out.value, load_schema(OCR))
    assert out.value["page"]["words"][1]["text"] == "60,00"
    assert ev.parse_ocr(ev.dumps(out.value)).image.size == (224, 224)  # for models that look at pixels
    assert set(out.value["timings_ms"]) >= {"fetch", "decode", "ocr"}
    assert m.value("socratext_receipts_total", stage="ocr", outcome="in") == 1
    assert m.value("socratext_receipts_total", stage="ocr", outcome="out") == 1
    assert m.value("socratext_stage_seconds_count", stage="ocr") == 1
    assert m.value("socratext_stage_seconds_count", stage="fetch") == 1


def test_ocr_stage_page_image_can_be_left_out() -> None:
    deps = ocr_deps({"uploads/r1.jpg": jpeg()})
    deps.settings = SETTINGS.model_copy(update={"ocr_event_page_image": False})
    (out,) = process_ocr_event(upload("r1", "uploads/r1.jpg"), deps)
    assert "page_image" not in out.value and out.value["page"]["words"]


def test_ocr_stage_sends_the_rules_labels_of_the_page_it_sends() -> None:
    """The OCR event carries the rules' label of every word of its (masked) page, so that the extraction
    stage need not run the rules; `ocr_event_rule_labels=False` leaves them out."""
    from socratext.extractors.rules import label_page

    (out,) = process_ocr_event(upload("r1", "uploads/r1.jpg"), ocr_deps({"uploads/r1.jpg": jpeg()}))
    jsonschema.validate(out.value, load_schema(OCR))
    parsed = ev.parse_ocr(ev.dumps(out.value))
    assert parsed.rule_labels == label_page(parsed.page)
    assert [w.label for w in parsed.rule_labels] == ["O", "total"]  # "TOTAL" "60,00"
    assert out.value["rule_labels"]["rules"] == "rules-3" and "rules" in out.value["timings_ms"]
    deps = ocr_deps({"uploads/r1.jpg": jpeg()})
    deps.settings = SETTINGS.model_copy(update={"ocr_event_rule_labels": False})
    (out,) = process_ocr_event(upload("r1", "uploads/r1.jpg"), deps)
    assert "rule_labels" not in out.value and ev.parse_ocr(ev.dumps(out.value)).rule_labels is None


@pytest.mark.parametrize(("raw", "objects", "code", "rid"), [
    (upload("r2", "uploads/missing.jpg"), {}, OBJECT_NOT_FOUND, "r2"),
    (upload("r3", "uploads/bad.jpg"), {"uploads/bad.jpg": b"not an image at all"}, NOT_AN_IMAGE, "r3"),
    (upload("r4", "uploads/cut.jpg"), {"uploads/cut.jpg": jpeg((400, 400), "red")[:300]}, TRUNCATED_IMAGE,
     "r4"),
    (b'{"schema_version": 1, "receipt_id": "r5"', {}, MALFORMED_EVENT, None),
    (b"\x00\xff", {}, MALFORMED_EVENT, None),
])
def test_ocr_stage_failures_go_to_the_dead_letter(raw: bytes, objects: dict, code: str,
                                                   rid: str | None) -> None:
    m = StreamMetrics()
    origin = Origin("receipts.uploaded", 2, 41)
    (out,) = process_ocr_event(raw, ocr_deps(objects, m), origin)
    assert out.topic == DEADLETTER
    jsonschema.validate(out.value, load_schema(DEADLETTER))
    assert (out.value["code"], out.value["stage"], out.value["receipt_id"]) == (code, "ocr", rid)
    assert out.value["origin"] == {"topic": "receipts.uploaded", "partition": 2, "offset": 41}
    assert out.key == (rid or "receipts.uploaded:2:41")
    assert m.value("socratext_deadletter_total", code=code) == 1
    assert m.value("socratext_receipts_total", stage="ocr", outcome="failed") == 1


def test_storage_outage_is_retried_before_dead_lettering() -> None:
    calls = []

    def flaky(bucket: str, key: str, max_bytes: int) -> bytes:
        calls.append(key)
        if len(calls) < 3 or key.endswith("down.jpg"):
            raise SocratextError(STORAGE_UNAVAILABLE, "connection refused")
        return jpeg()

    deps = OcrDeps(SETTINGS, flaky, load_images, fake_ocr, retry_delays=(0.0, 0.0))
    assert [o.topic for o in process_ocr_event(upload("r1", "uploads/r1.jpg"), deps)] == [OCR]
    assert len(calls) == 3
    (out,) = process_ocr_event(upload("r2", "uploads/down.jpg"), deps)
    assert out.topic == DEADLETTER and out.value["code"] == STORAGE_UNAVAILABLE and len(calls) == 6


def test_pdf_gives_one_event_per_page_and_a_bad_page_does_not_lose_the_others() -> None:
    outs = process_ocr_event(upload("doc", "uploads/doc.pdf"), ocr_deps({"uploads/doc.pdf": pdf(3)}))
    # page 2 is black: the fake OCR fails on it
    assert [(o.topic, o.key) for o in outs] == [(OCR, "doc-p1"), (DEADLETTER, "doc-p2"), (OCR, "doc-p3")]
    assert outs[1].value["code"] == OCR_FAILED
    assert [o.value["page_number"] for o in by_topic(outs, OCR)] == [1, 3]
    assert {o.value["parent_receipt_id"] for o in by_topic(outs, OCR)} == {"doc"}


def test_s3_notification_is_processed_and_deletions_are_skipped() -> None:
    key = "incoming/un ticket.jpg"
    note = {"EventName": "s3:ObjectCreated:Put", "Key": "receipts/incoming/un+ticket.jpg", "Records": [{
        "eventVersion": "2.0", "eventName": "s3:ObjectCreated:Put", "eventTime": "2026-11-25T10:00:00Z",
        "s3": {"bucket": {"name": "receipts"}, "object": {"key": "incoming/un+ticket.jpg", "eTag": "e1"}}}]}
    (out,) = process_ocr_event(ev.dumps(note), ocr_deps({key: jpeg()}))
    assert out.topic == OCR and out.key == ev.s3_receipt_id("receipts", key, "e1")
    assert out.value["source"] == {"bucket": "receipts", "key": key}
    note["Records"][0]["eventName"] = "s3:ObjectRemoved:Delete"
    m = StreamMetrics()
    assert process_ocr_event(ev.dumps(note), ocr_deps({}, m)) == []
    assert m.value("socratext_receipts_total", stage="ocr", outcome="skipped") == 1


# --- stage 2 --------------------------------------------------------------------------------------------

class FakeExtractor:
    """Labels 'TOTAL' as O and the amount after it as total; breaks on any page with a word 'BOOM'."""

    name, version = "fake", "0"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def label(self, pages: list[OcrPage], images: object = None) -> list[list[WordLabel]]:
        self.calls.append(len(pages))
        if any(w.text == "BOOM" for p in pages for w in p.words):
            raise RuntimeError("CUDA error: device-side assert triggered")
        return [[WordLabel("total" if "," in w.text else "O", 0.97) for w in p.words] for p in pages]


def ocr_value(rid: str, words: list[str]) -> bytes:
    page = OcrPage([Word(t, (10 + 60 * i, 10, 60 + 60 * i, 30), 0.96, 0) for i, t in enumerate(words)],
                   400, 300)
    up = ev.UploadEvent(rid, "receipts", f"uploads/{rid}.jpg", "2026-11-25T10:00:00.000Z")
    return ev.dumps(ev.ocr_event(up, page, 1, 1, {"ocr": 5.0}))


def extract_deps(extractor: FakeExtractor, metrics: StreamMetrics | None = None, threshold: float = 0.0,
                 assemble=assemble_receipt) -> ExtractDeps:
    return ExtractDeps(Settings(review_threshold=threshold), extractor, assemble, metrics)


def test_extract_batch_one_bad_receipt_does_not_spoil_the_batch() -> None:
    m = StreamMetrics()
    fx = FakeExtractor()
    raws = [ocr_value("a", ["TOTAL", "12,50"]), b"{broken", ocr_value("b", ["BOOM", "3,00"]),
            ocr_value("c", ["TOTAL", "7,10"])]
    outs = process_extract_batch(raws, extract_deps(fx, m))
    assert fx.calls == [3, 1, 1, 1]  # one batched call, then one by one to find the culprit
    extracted = by_topic(outs, EXTRACTED)
    assert [o.key for o in extracted] == ["a", "c"]
    for o in extracted:
        jsonschema.validate(o.value, load_schema(EXTRACTED))
        assert o.value["receipt_id"] == o.key and o.value["model"] == {"name": "fake", "version": "0"}
        assert o.value["uploaded_at"] == "2026-11-25T10:00:00.000Z"
        assert {"ocr", "model", "assemble"} <= set(o.value["timings_ms"])
    assert extracted[0].value["fields"]["total"]["value"] == "12.50"
    dead = {o.value["code"]: o for o in by_topic(outs, DEADLETTER)}
    assert set(dead) == {MALFORMED_EVENT, MODEL_FAILED}
    assert dead[MODEL_FAILED].key == "b" and "CUDA" in dead[MODEL_FAILED].value["message"]
    assert m.value("socratext_batch_size_count") == 1 and m.value("socratext_batch_size_sum") == 4
    assert m.value("socratext_receipts_total", stage="extract", outcome="in") == 4
    assert m.value("socratext_receipts_total", stage="extract", outcome="out") == 2
    assert m.value("socratext_receipts_total", stage="extract", outcome="failed") == 2
    assert m.value("socratext_confidence_count") == 2 and m.value("socratext_end_to_end_seconds_count") == 2


class Looking(FakeExtractor):
    """A fake model that looks at pixels (`uses_images`): records the images of each call."""

    uses_images = True

    def __init__(self) -> None:
        super().__init__()
        self.images: list[object] = []

    def label(self, pages: list[OcrPage], images: object = None) -> list[list[WordLabel]]:
        self.images.append(images)
        return super().label(pages, images)


def test_extract_batch_hands_the_page_images_to_the_extractor() -> None:
    """A model that looks at pixels gets each event's page image, in batch order (None where an event
    came without one); when no event of the batch has one, it gets None, as before."""

    def with_image(rid: str, color: str) -> bytes:
        doc = json.loads(ocr_value(rid, ["TOTAL", "1,00"]))
        doc["page_image"] = ev.page_image(Image.new("RGB", (300, 600), color))
        return ev.dumps(doc)

    fx = Looking()
    outs = process_extract_batch([with_image("a", "red"), ocr_value("b", ["TOTAL", "2,00"]),
                                  with_image("c", "blue")], extract_deps(fx))
    assert len(by_topic(outs, EXTRACTED)) == 3
    (imgs,) = fx.images
    assert imgs[1] is None and [im.size for im in (imgs[0], imgs[2])] == [(224, 224)] * 2
    assert imgs[0].getpixel((100, 100))[0] > 200 and imgs[2].getpixel((100, 100))[2] > 200
    fx2 = Looking()
    process_extract_batch([ocr_value("d", ["TOTAL", "3,00"])], extract_deps(fx2))
    assert fx2.images == [None]
    # receipts sent to review keep their page image (a retrained model must see what this one saw)
    outs = process_extract_batch([with_image("e", "red")], extract_deps(Looking(), threshold=1.0))
    reviews = by_topic(outs, REVIEW)
    assert len(reviews) == 1 and reviews[0].value["page_image"]["media_type"] == "image/jpeg"
    jsonschema.validate(reviews[0].value, load_schema(REVIEW))


def test_extract_batch_decodes_page_images_only_for_an_extractor_that_looks() -> None:
    """An extractor that says it looks at no pixels (`uses_images = False`: the rules, a text+layout
    model) gets no image and the stage decodes none; the review event still carries the page image."""

    class Blind(Looking):
        uses_images = False

    doc = json.loads(ocr_value("a", ["TOTAL", "1,00"]))
    doc["page_image"] = ev.page_image(Image.new("RGB", (300, 600), "red"))
    fx = Blind()
    outs = process_extract_batch([ev.dumps(doc)], extract_deps(fx, threshold=1.0))
    assert fx.images == [None]
    (review,) = by_topic(outs, REVIEW)
    assert review.value["page_image"] == doc["page_image"]
    jsonschema.validate(review.value, load_schema(REVIEW))


def test_ocr_stage_runs_without_the_model_stack() -> None:
    """The OCR worker (CPU, ~200 MB) labels its pages with the rules and never imports torch or
    transformers for it: the rules' name and version live beside the rules, not in socratext.model."""
    import subprocess
    import sys

    code = ("import sys, json\n"
            "from tests.test_agents import ocr_deps, upload, jpeg\n"
            "from streams.agents.ocr import process_ocr_event\n"
            "from streams import events as ev\n"
            "(out,) = process_ocr_event(upload('r1', 'u/r1.jpg'), ocr_deps({'u/r1.jpg': jpeg()}))\n"
            "assert ev.parse_ocr(ev.dumps(out.value)).rule_labels\n"
            "print(json.dumps(sorted(m for m in ('torch', 'transformers') if m in sys.modules)))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1]) == []


def test_extract_batch_uses_the_rules_labels_of_the_ocr_event() -> None:
    """An extractor that takes them (the rules, a model combined with them) labels with the OCR event's
    rule labels instead of running the rules again; labels from other rules than this worker's, or none,
    and it runs its own. Shown with labels the rules would never give: the event's "O" everywhere."""
    from socratext.extractors.rules import RulesExtractor
    from socratext.model.hints import rules_id

    def event(rid: str, rules: str | None) -> bytes:
        doc = json.loads(ocr_value(rid, ["TOTAL", "12,50"]))
        if rules is not None:
            doc["rule_labels"] = {"rules": rules, "labels": ["O", "O"], "probabilities": [1.0, 1.0]}
        return ev.dumps(doc)

    outs = process_extract_batch([event("a", rules_id()), event("b", "rules-0"), event("c", None)],
                                 extract_deps(RulesExtractor()))
    totals = {o.key: o.value["fields"].get("total", {}).get("value") for o in by_topic(outs, EXTRACTED)}
    assert totals == {"a": None, "b": "12.50", "c": "12.50"}

    class Spy(FakeExtractor):  # takes no rule labels: never handed any
        def label(self, pages: list[OcrPage], images: object = None) -> list[list[WordLabel]]:
            return super().label(pages, images)

    assert len(by_topic(process_extract_batch([event("d", rules_id())], extract_deps(Spy())), EXTRACTED)) == 1


def test_low_confidence_goes_to_review_with_page_and_labels() -> None:
    m = StreamMetrics()
    outs = process_extract_batch([ocr_value("a", ["TOTAL", "12,50"])], extract_deps(FakeExtractor(), m, 1.01))
    (extracted,) = by_topic(outs, EXTRACTED)
    (review,) = by_topic(outs, REVIEW)
    assert extracted.value["needs_review"] and review.key == "a"
    jsonschema.validate(review.value, load_schema(REVIEW))
    assert [w["text"] for w in review.value["page"]["words"]] == ["TOTAL", "12,50"]
    assert review.value["word_labels"] == [{"label": "O", "probability": 0.97},
                                           {"label": "total", "probability": 0.97}]
    assert m.value("socratext_review_total") == 1
    # and with a threshold of 0 nothing goes to review
    assert by_topic(process_extract_batch([ocr_value("a", ["TOTAL", "1,00"])], extract_deps(FakeExtractor())),
                    REVIEW) == []


def test_assembly_failure_and_duplicates() -> None:
    def assemble(page, labels, **kw):
        if kw["receipt_id"] == "bad":
            raise KeyError("boom")
        return assemble_receipt(page, labels, **kw)

    fx = FakeExtractor()
    raws = [ocr_value("a", ["TOTAL", "1,00"]), ocr_value("bad", ["TOTAL", "2,00"]), ocr_value("a", ["x"])]
    outs = process_extract_batch(raws, extract_deps(fx, assemble=assemble))
    assert [(o.topic, o.key) for o in outs] == [(EXTRACTED, "a"), (DEADLETTER, "bad")]
    assert outs[1].value["code"] == INTERNAL and fx.calls == [2]


def test_extractor_with_wrong_label_count_is_a_model_failure() -> None:
    class Short(FakeExtractor):
        def label(self, pages, images=None):
            return [[WordLabel("O")] for _ in pages]

    (out,) = process_extract_batch([ocr_value("a", ["TOTAL", "1,00"])], extract_deps(Short()))
    assert out.topic == DEADLETTER and out.value["code"] == MODEL_FAILED


# --- plumbing -------------------------------------------------------------------------------------------

def test_publish_awaits_every_delivery_before_returning() -> None:
    delivered: list[tuple[str, bytes]] = []

    class Topic:
        def __init__(self, name: str) -> None:
            self.name = name

        async def send(self, key: bytes, value: bytes) -> asyncio.Future:
            fut = asyncio.get_running_loop().create_future()

            def ack() -> None:
                delivered.append((self.name, key))
                fut.set_result(None)

            asyncio.get_running_loop().call_later(0.01, ack)
            return fut

    topics = {OCR: Topic(OCR), DEADLETTER: Topic(DEADLETTER)}
    outs = [OutEvent(OCR, "a", {}), OutEvent(DEADLETTER, "b", {}), OutEvent(OCR, "c", {})]
    asyncio.run(publish(outs, topics))
    assert sorted(delivered) == [(DEADLETTER, b"b"), (OCR, b"a"), (OCR, b"c")]


def test_publish_turns_an_unpublishable_result_into_a_dead_letter() -> None:
    sent: list[tuple[str, bytes, bytes]] = []

    class Topic:
        def __init__(self, name: str, fail: bool = False) -> None:
            self.name, self.fail = name, fail

        async def send(self, key: bytes, value: bytes) -> asyncio.Future:
            fut = asyncio.get_running_loop().create_future()
            if self.fail:
                fut.set_exception(RuntimeError("MessageSizeTooLargeError"))
            else:
                sent.append((self.name, key, value))
                fut.set_result(None)
            return fut

    topics = {EXTRACTED: Topic(EXTRACTED, fail=True), DEADLETTER: Topic(DEADLETTER)}
    asyncio.run(publish([OutEvent(EXTRACTED, "a", {"receipt_id": "a"})], topics))
    ((topic, key, value),) = sent
    doc = json.loads(value)
    assert (topic, key, doc["code"], doc["stage"]) == (DEADLETTER, b"a", INTERNAL, "extract")
    jsonschema.validate(doc, load_schema(DEADLETTER))
    topics[DEADLETTER].fail = True
    with pytest.raises(RuntimeError):  # the broker is failing: the agent must not ack unpublished work
        asyncio.run(publish([OutEvent(DEADLETTER, "b", {})], topics))


def test_metrics_server_serves_metrics_and_health() -> None:
    m = StreamMetrics()
    m.count("ocr", "in", 3)
    m.set_model("rules", "1")
    state = {"status": "starting"}
    server = MetricsServer(m, 0, host="127.0.0.1", health=lambda: dict(state)).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        text = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
        assert 'socratext_receipts_total{outcome="in",stage="ocr"} 3.0' in text
        assert 'socratext_model_info{name="rules",version="1"} 1.0' in text
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{base}/healthz", timeout=5)
        assert info.value.code == 503
        state["status"] = "ok"
        assert json.loads(urllib.request.urlopen(f"{base}/healthz", timeout=5).read())["status"] == "ok"
    finally:
        server.stop()


def test_json_log_lines_carry_the_receipt_id() -> None:
    from streams.worker import JsonFormatter

    rec = logging.LogRecord("streams", logging.WARNING, __file__, 1, "dead-lettered: %s", ("x",), None)
    rec.receipt_id, rec.code = "r1", "not_an_image"
    doc = json.loads(JsonFormatter().format(rec))
    assert doc["msg"] == "dead-lettered: x" and doc["receipt_id"] == "r1" and doc["code"] == "not_an_image"
    assert doc["level"] == "warning" and doc["ts"].endswith("Z")


def test_faust_app_configuration() -> None:
    from streams.app import Runtime, create_app

    settings = Settings(kafka_bootstrap="localhost:1")
    app = create_app(settings, stage="extract", runtime=Runtime(settings))
    assert list(app.agents) == ["socratext.extract"]
    assert app.conf.id == "socratext" and not app.conf.web_enabled
    assert app.conf.consumer_auto_offset_reset == "earliest"
    assert str(app.conf.processing_guarantee.value) == "at_least_once"
    assert create_app(settings, stage="all", runtime=Runtime(settings)).agents.keys() == {
        "socratext.ocr", "socratext.extract"}
    with pytest.raises(ValueError):
        create_app(settings, stage="gpu")
