"""`socratext upload` keeps the original file name: in the upload event, the object's metadata, and the
`source` of every downstream event (OCR, extracted, review), so a consumer joins results to its files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from socratext.document import OcrPage, Word, WordLabel
from socratext.errors import MALFORMED_EVENT, SocratextError
from socratext.settings import Settings
from streams import events as ev
from streams.topics import EXTRACTED, OCR, REVIEW, UPLOADED, load_schema

ALLOWED = frozenset({"receipts"})
NAME = "ticket café 25-11 (1).jpg"


def upload(**over: object) -> bytes:
    doc = {"schema_version": 1, "receipt_id": "r-001", "bucket": "receipts", "key": "uploads/r-001.jpg",
           "uploaded_at": "2026-11-25T10:00:00Z", "content_type": "image/jpeg", "filename": NAME}
    doc.update(over)
    return json.dumps(doc).encode()


def notification(user_metadata: Any) -> bytes:
    obj = {"key": "incoming/r.jpg", "size": 12, "eTag": "abc", "contentType": "image/jpeg",
           "userMetadata": user_metadata}
    return json.dumps({"EventName": "s3:ObjectCreated:Put", "Records": [{
        "eventVersion": "2.0", "eventName": "s3:ObjectCreated:Put", "eventTime": "2026-11-25T10:00:01.250Z",
        "s3": {"bucket": {"name": "receipts"}, "object": obj}}]}).encode()


def test_the_file_name_travels_from_the_upload_to_the_extracted_and_review_events() -> None:
    raw = upload()
    jsonschema.validate(json.loads(raw), load_schema(UPLOADED))
    (up,) = ev.parse_upload(raw, ALLOWED)
    assert up.filename == NAME
    page = OcrPage([Word("TOTAL", (10, 10, 60, 30), 0.9, 1), Word("12,50", (70, 10, 120, 30), 0.8, 1)],
                   200, 400)
    ocr = ev.ocr_event(up, page, 1, 1, {"ocr": 5})
    jsonschema.validate(ocr, load_schema(OCR))
    parsed = ev.parse_ocr(ev.dumps(ocr))
    assert parsed.source == {"bucket": "receipts", "key": "uploads/r-001.jpg", "filename": NAME}
    receipt = {"receipt_id": "r-001", "source": parsed.source, "model": {"name": "rules", "version": "1"},
               "fields": {}, "items": [], "vat_lines": [], "confidence": 0.4, "needs_review": True,
               "timings_ms": {}}
    extracted = ev.extracted_event(receipt, up.uploaded_at)
    jsonschema.validate(extracted, load_schema(EXTRACTED))
    assert extracted["source"]["filename"] == NAME
    review = ev.review_event(extracted, page, [WordLabel("O", 0.9), WordLabel("total", 0.6)])
    jsonschema.validate(review, load_schema(REVIEW))
    assert review["source"]["filename"] == NAME


def test_without_a_file_name_the_source_is_as_before() -> None:
    absent = json.loads(upload())
    del absent["filename"]
    for raw in (json.dumps(absent).encode(), upload(filename=None)):
        (up,) = ev.parse_upload(raw, ALLOWED)
        assert up.filename is None and up.source == {"bucket": "receipts", "key": "uploads/r-001.jpg"}


@pytest.mark.parametrize("bad", ["", "a/b.jpg", "..\\\\x.jpg", "a\x00.jpg", "tab\there.jpg", "x" * 256, 12])
def test_a_file_name_that_is_not_a_plain_base_name_is_rejected(bad: object) -> None:
    with pytest.raises(SocratextError) as exc:
        ev.parse_upload(upload(filename=bad), ALLOWED)
    assert exc.value.code == MALFORMED_EVENT
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(upload(filename=bad)), load_schema(UPLOADED))


def test_a_bucket_notification_takes_the_name_from_the_object_metadata() -> None:
    (up,) = ev.parse_upload(notification({"X-Amz-Meta-Filename": "ticket%20caf%C3%A9%2025-11%20%281%29.jpg",
                                          "content-type": "image/jpeg"}), ALLOWED)
    assert up.filename == NAME and up.source["filename"] == NAME
    for unusable in (None, {"X-Amz-Meta-Filename": "a%2Fb.jpg"}, {"X-Amz-Meta-Filename": "%FF"}, ["x"]):
        (up,) = ev.parse_upload(notification(unusable), ALLOWED)
        assert up.filename is None and "filename" not in up.source, unusable


def test_the_asyncapi_upload_example_carries_a_file_name() -> None:
    doc = yaml.safe_load((Path(__file__).resolve().parent.parent / "docs" / "asyncapi.yaml").read_text())
    example = doc["components"]["messages"]["ReceiptUploaded"]["examples"][0]["payload"]
    jsonschema.validate(example, load_schema(UPLOADED))
    assert ev.parse_upload(json.dumps(example).encode(), ALLOWED)[0].filename == example["filename"]


class FakeStore:
    puts: list[tuple[str, str, str, dict[str, str] | None]] = []

    def __init__(self, settings: Settings) -> None:
        FakeStore.puts = []

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "",
                  metadata: dict[str, str] | None = None) -> None:
        FakeStore.puts.append((bucket, key, content_type, metadata))


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append(json.loads(value))

    def flush(self, timeout: float) -> None:
        pass


def test_upload_puts_the_base_name_in_the_event_and_the_object_metadata(monkeypatch: pytest.MonkeyPatch,
                                                                        ) -> None:
    import socratext.storage
    from socratext.cli_stream import upload_files

    monkeypatch.setattr(socratext.storage, "ObjectStore", FakeStore)
    producer = FakeProducer()
    rows = upload_files(Settings(), [(f"/home/me/scans/{NAME}", b"\xff\xd8jpeg bytes"),
                                     ("bad\x01name.png", b"png bytes")], producer=producer)
    (b1, key1, ctype1, meta1), (_, _, _, meta2) = FakeStore.puts
    assert key1 == rows[0]["key"] and ctype1 == "image/jpeg" and NAME not in key1
    assert meta1 == {"filename": "ticket%20caf%C3%A9%2025-11%20%281%29.jpg"}  # headers are ASCII
    assert producer.sent[0]["filename"] == NAME, "the name only, not the local directory"
    jsonschema.validate(producer.sent[0], load_schema(UPLOADED))
    assert meta2 is None and "filename" not in producer.sent[1], "a name with control characters is dropped"
    # what the worker will see for the first one
    assert ev.parse_upload(json.dumps(producer.sent[0]).encode(), ALLOWED)[0].source["filename"] == NAME
    # and the metadata reads back through the notification path
    (up,) = ev.parse_upload(notification({"X-Amz-Meta-Filename": meta1["filename"]}), ALLOWED)
    assert up.filename == NAME
