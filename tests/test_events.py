"""Event parsing and construction (streams.events): both upload formats, validation codes, schemas."""

from __future__ import annotations

import base64
import json

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socratext.document import OcrPage, Word, WordLabel
from socratext.errors import FORBIDDEN_KEY, MALFORMED_EVENT, UNKNOWN_SCHEMA_VERSION, SocratextError
from streams import events as ev
from streams.topics import DEADLETTER, EXTRACTED, LOGICAL_TOPICS, OCR, REVIEW, TOPICS, UPLOADED, load_schema

ALLOWED = frozenset({"receipts"})
PARSE_CODES = {MALFORMED_EVENT, UNKNOWN_SCHEMA_VERSION, FORBIDDEN_KEY}


def ours(**over: object) -> bytes:
    doc = {"schema_version": 1, "receipt_id": "r-001", "bucket": "receipts", "key": "uploads/a.jpg",
           "uploaded_at": "2026-11-25T10:00:00Z", "content_type": "image/jpeg"}
    doc.update(over)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def minio(key: str = "incoming/ticket%20caf%C3%A9+1.jpg", etag: str = "0123abcd", name: str =
          "s3:ObjectCreated:Put", bucket: str = "receipts") -> bytes:
    """A notification as MinIO publishes it to Kafka (shape copied from MinIO's event format)."""
    return json.dumps({
        "EventName": name, "Key": f"{bucket}/{key}",
        "Records": [{"eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "",
                     "eventTime": "2026-11-25T10:00:01.250Z", "eventName": name,
                     "userIdentity": {"principalId": "socratext"},
                     "s3": {"s3SchemaVersion": "1.0", "configurationId": "socratext-uploaded",
                            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                            "object": {"key": key, "size": 1234, "eTag": etag, "contentType": "image/jpeg",
                                       "sequencer": "187A"}}}]}).encode()


def code_of(raw: bytes) -> str:
    with pytest.raises(SocratextError) as info:
        ev.parse_upload(raw, ALLOWED)
    return info.value.code


def test_our_upload_event() -> None:
    (up,) = ev.parse_upload(ours(uploaded_at="2026-11-25T11:00:00+01:00"), ALLOWED)
    assert (up.receipt_id, up.bucket, up.key, up.origin) == ("r-001", "receipts", "uploads/a.jpg", "upload")
    assert up.uploaded_at == "2026-11-25T10:00:00.000Z"  # normalised to UTC
    assert up.source == {"bucket": "receipts", "key": "uploads/a.jpg"}


@pytest.mark.parametrize(("over", "code"), [
    ({"schema_version": ...}, MALFORMED_EVENT),
    ({"schema_version": 2}, UNKNOWN_SCHEMA_VERSION),
    ({"schema_version": "1"}, UNKNOWN_SCHEMA_VERSION),
    ({"schema_version": True}, UNKNOWN_SCHEMA_VERSION),
    ({"receipt_id": ...}, MALFORMED_EVENT),
    ({"receipt_id": "has space"}, MALFORMED_EVENT),
    ({"bucket": ...}, MALFORMED_EVENT),
    ({"key": ""}, MALFORMED_EVENT),
    ({"uploaded_at": "yesterday"}, MALFORMED_EVENT),
    ({"uploaded_at": 1732528800}, MALFORMED_EVENT),
    ({"content_type": 5}, MALFORMED_EVENT),
    ({"bucket": "secrets"}, FORBIDDEN_KEY),
    ({"key": "../etc/passwd"}, FORBIDDEN_KEY),
    ({"key": "uploads/../../x"}, FORBIDDEN_KEY),
    ({"key": "/abs/path.jpg"}, FORBIDDEN_KEY),
    ({"key": "a\x00b"}, FORBIDDEN_KEY),
])
def test_our_upload_event_errors(over: dict, code: str) -> None:
    assert code_of(ours(**over)) == code


@pytest.mark.parametrize("raw", [b"", b"not json", b"\xff\xfe", b"[1, 2]", b'"str"', b"null", b"{",
                                 b"[" * 100_000, b'{"Records": []}', b'{"Records": [1]}'])
def test_garbage_is_malformed(raw: bytes) -> None:
    assert code_of(raw) == MALFORMED_EVENT


def test_minio_notification_key_is_url_decoded_and_id_is_deterministic() -> None:
    (up,) = ev.parse_upload(minio(), ALLOWED)
    assert up.key == "incoming/ticket café 1.jpg"
    assert (up.origin, up.size, up.etag) == ("s3", 1234, "0123abcd")
    assert up.uploaded_at == "2026-11-25T10:00:01.250Z"
    # a redelivery gets the same id; a new version of the same key (new ETag) a new one
    assert ev.parse_upload(minio(), ALLOWED)[0].receipt_id == up.receipt_id
    assert ev.parse_upload(minio(etag="ffff"), ALLOWED)[0].receipt_id != up.receipt_id
    assert up.receipt_id == ev.s3_receipt_id("receipts", "incoming/ticket café 1.jpg", "0123abcd")
    assert ev.RECEIPT_ID_RE.match(up.receipt_id)


def test_minio_notifications_that_are_not_receipts() -> None:
    assert ev.parse_upload(minio(name="s3:ObjectRemoved:Delete"), ALLOWED) == []
    assert ev.parse_upload(minio(key="incoming/folder/"), ALLOWED) == []
    assert code_of(minio(key="incoming/%2E%2E/x.jpg")) == FORBIDDEN_KEY  # encoded ".." is still ".."
    assert code_of(minio(bucket="other")) == FORBIDDEN_KEY
    assert code_of(minio(key="incoming/%ff%fe.jpg")) == MALFORMED_EVENT
    doc = json.loads(minio())
    doc["Records"][0]["eventVersion"] = "3.0"
    assert code_of(json.dumps(doc).encode()) == UNKNOWN_SCHEMA_VERSION
    del doc["Records"][0]["s3"]
    doc["Records"][0]["eventVersion"] = "2.1"
    assert code_of(json.dumps(doc).encode()) == MALFORMED_EVENT


def _check_parse(raw: bytes) -> None:
    try:
        ups = ev.parse_upload(raw, ALLOWED)
    except SocratextError as exc:
        assert exc.code in PARSE_CODES
        return
    for up in ups:
        assert ev.RECEIPT_ID_RE.match(up.receipt_id) and up.bucket in ALLOWED and up.key
        ev.check_location(up.bucket, up.key, ALLOWED)
        assert ev.parse_time(up.uploaded_at) == up.uploaded_at


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_uploads_or_a_coded_error(raw: bytes) -> None:
    _check_parse(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional={
    "schema_version": st.sampled_from([1, 2, "1", None, True, 1.0]),
    "receipt_id": st.text(max_size=10) | json_values,
    "bucket": st.sampled_from(["receipts", "other", "", "UP"]) | json_values,
    "key": st.text(max_size=30) | st.sampled_from(["a/../b", "/x", "ok.jpg"]) | json_values,
    "uploaded_at": st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01", "x" * 12]) | json_values,
    "content_type": json_values,
    "Records": st.lists(json_values, max_size=2) | json_values,
}))
def test_any_json_object_gives_uploads_or_a_coded_error(doc: dict) -> None:
    _check_parse(json.dumps(doc).encode())


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_notifications_give_uploads_or_a_coded_error(data: st.DataObject) -> None:
    doc = json.loads(minio())
    rec = doc["Records"][0]
    target = data.draw(st.sampled_from([rec, rec["s3"], rec["s3"]["bucket"], rec["s3"]["object"]]))
    k = data.draw(st.sampled_from(sorted(target)))
    target[k] = data.draw(json_values | st.text(max_size=40))
    _check_parse(json.dumps(doc).encode())


def page() -> OcrPage:
    return OcrPage([Word("TOTAL", (10, 10, 60, 30), 0.9, 1), Word("12,50", (70, 10, 120, 30), 0.8, 1)],
                   200, 400)


def test_ocr_event_round_trip_and_schema() -> None:
    (up,) = ev.parse_upload(ours(), ALLOWED)
    doc = ev.ocr_event(up, page(), 2, 3, {"fetch": 1.234, "ocr": 50})
    jsonschema.validate(doc, load_schema(OCR))
    assert doc["receipt_id"] == "r-001-p2" and doc["parent_receipt_id"] == "r-001"
    parsed = ev.parse_ocr(ev.dumps(doc))
    assert parsed.page == page() and parsed.receipt_id == "r-001-p2" and parsed.source == up.source
    assert ev.page_receipt_id("r", 1, 1) == "r"


def test_ocr_event_carries_the_page_image_the_layout_models_see() -> None:
    import base64
    import io

    from PIL import Image

    (up,) = ev.parse_upload(ours(), ALLOWED)
    scan = Image.new("RGB", (600, 1500), "white")
    scan.paste((20, 20, 20), (50, 100, 550, 160))  # a dark band across the top
    doc = ev.ocr_event(up, page(), 1, 1, {}, image=scan)
    jsonschema.validate(doc, load_schema(OCR))
    assert doc["page_image"]["media_type"] == "image/jpeg" and len(doc["page_image"]["data"]) < 20_000
    img = ev.parse_ocr(ev.dumps(doc)).image
    assert img.size == (ev.PAGE_IMAGE_SIDE, ev.PAGE_IMAGE_SIDE) and img.mode == "RGB"
    assert sum(img.getpixel((112, 19))) < 150 and sum(img.getpixel((112, 150))) > 700  # band kept, resized
    assert ev.parse_ocr(ev.dumps(ev.ocr_event(up, page(), 1, 1, {}))).image is None  # optional

    def bad(image_doc: object) -> str:
        with pytest.raises(SocratextError) as info:
            ev.parse_ocr(ev.dumps({**doc, "page_image": image_doc}))
        assert info.value.code == MALFORMED_EVENT
        return info.value.message

    assert "not a readable image" in bad({"media_type": "image/jpeg", "data": "bm90IGFuIGltYWdl"})
    assert "not a readable image" in bad({"media_type": "image/jpeg", "data": "***"})
    assert "media_type" in bad({"media_type": "image/gif", "data": doc["page_image"]["data"]})
    assert "media_type" in bad("a string")
    assert "base64 characters" in bad({"media_type": "image/png", "data": "A" * 300_000})
    buf = io.BytesIO()
    Image.new("L", (5000, 10)).save(buf, "PNG")  # small file, too wide: refused from its header
    wide = base64.b64encode(buf.getvalue()).decode()
    assert "over 1024 px" in bad({"media_type": "image/png", "data": wide})


def test_rule_labels_round_trip_and_checks() -> None:
    """`rule_labels`: one label and probability per word, from these rules (else ignored: None); any
    malformed form, count, label or probability makes the event malformed."""
    from socratext.document import WordLabel
    from socratext.model.hints import rules_id

    (up,) = ev.parse_upload(ours(), ALLOWED)
    labels = [WordLabel("O", 1.0), WordLabel("total", 0.925)]
    doc = ev.ocr_event(up, page(), 1, 1, {}, rule_labels=labels)
    jsonschema.validate(doc, load_schema(OCR))
    assert doc["rule_labels"] == {"rules": rules_id(), "labels": ["O", "total"],
                                  "probabilities": [1.0, 0.925]}
    assert ev.parse_ocr(ev.dumps(doc)).rule_labels == labels
    assert ev.parse_ocr(ev.dumps({**doc, "rule_labels": {**doc["rule_labels"], "rules": "rules-0"}})
                        ).rule_labels is None
    with pytest.raises(ValueError):
        ev.ocr_event(up, page(), 1, 1, {}, rule_labels=labels[:1])

    def bad(rule_labels: object) -> str:
        with pytest.raises(SocratextError) as info:
            ev.parse_ocr(ev.dumps({**doc, "rule_labels": rule_labels}))
        assert info.value.code == MALFORMED_EVENT
        return info.value.message

    good = doc["rule_labels"]
    assert "must be" in bad(["O", "total"])
    assert "must be" in bad({"labels": ["O", "total"], "probabilities": [1, 1]})
    assert "for 2 words" in bad({**good, "labels": ["O"]})
    assert "for 2 words" in bad({**good, "probabilities": [1.0, 1.0, 1.0]})
    assert "not a word label" in bad({**good, "labels": ["O", "B-total"]})
    assert "in [0, 1]" in bad({**good, "probabilities": [1.0, 1.5]})
    assert "in [0, 1]" in bad({**good, "probabilities": [1.0, True]})


def test_page_image_left_undecoded_for_an_extractor_that_does_not_look() -> None:
    """`decode_image=False` (the stage's extractor looks at no pixels): no image, the event's own
    `page_image` kept for the review topic, and the form, base64, header and size still checked."""
    import base64
    import io

    from PIL import Image

    (up,) = ev.parse_upload(ours(), ALLOWED)
    doc = ev.ocr_event(up, page(), 1, 1, {}, image=Image.new("RGB", (600, 1500), "white"))
    parsed = ev.parse_ocr(ev.dumps(doc), decode_image=False)
    assert parsed.image is None and parsed.page_image == doc["page_image"] and parsed.page == page()

    def refused(image_doc: object) -> str:
        with pytest.raises(SocratextError) as info:
            ev.parse_ocr(ev.dumps({**doc, "page_image": image_doc}), decode_image=False)
        assert info.value.code == MALFORMED_EVENT
        return info.value.message

    wide = io.BytesIO()
    Image.new("L", (ev.MAX_PAGE_IMAGE_SIDE + 1, 8)).save(wide, "PNG")  # refused from its header alone
    wide_b64 = base64.b64encode(wide.getvalue()).decode()
    assert "px a side" in refused({"media_type": "image/png", "data": wide_b64})
    assert "not a readable image" in refused({"media_type": "image/jpeg", "data": "bm90IGFuIGltYWdl"})
    assert "not a readable image" in refused({"media_type": "image/jpeg", "data": "***"})
    assert "media_type" in refused({"media_type": "image/gif", "data": doc["page_image"]["data"]})


@pytest.mark.parametrize("mutate", [
    lambda d: d.pop("page"), lambda d: d["page"].pop("width"), lambda d: d["page"]["words"][0].pop("box"),
    lambda d: d.update(source="x"), lambda d: d.update(schema_version=7), lambda d: d["page"].update(words=3),
])
def test_bad_ocr_events(mutate) -> None:
    (up,) = ev.parse_upload(ours(), ALLOWED)
    doc = ev.ocr_event(up, page(), 1, 1, {})
    mutate(doc)
    with pytest.raises(SocratextError) as info:
        ev.parse_ocr(ev.dumps(doc))
    assert info.value.code in (MALFORMED_EVENT, UNKNOWN_SCHEMA_VERSION)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_ocr_event_parses_or_gives_a_coded_error(data: st.DataObject) -> None:
    (up,) = ev.parse_upload(ours(), ALLOWED)
    doc = ev.ocr_event(up, page(), 1, 1, {"ocr": 1.0})
    target = data.draw(st.sampled_from([doc, doc["page"], doc["page"]["words"][0]]))
    target[data.draw(st.sampled_from(sorted(target)))] = data.draw(
        json_values | st.sampled_from([float("inf"), -1, 10**30]))
    raw = data.draw(st.sampled_from([ev.dumps(doc), json.dumps(doc).encode(), ev.dumps(doc)[:40]]))
    try:
        parsed = ev.parse_ocr(raw)
    except SocratextError as exc:
        assert exc.code in (MALFORMED_EVENT, UNKNOWN_SCHEMA_VERSION)
    else:
        assert isinstance(parsed.page, OcrPage) and ev.RECEIPT_ID_RE.match(parsed.receipt_id)


def test_extracted_review_and_deadletter_events_match_their_schemas() -> None:
    receipt = {"receipt_id": "r-001", "source": {"bucket": "receipts", "key": "k.jpg"},
               "model": {"name": "rules", "version": "1"},
               "fields": {"total": {"value": "12.50", "confidence": 0.8, "text": "12,50",
                                    "boxes": [[70, 10, 120, 30]]}},
               "vat_lines": [{"rate": "20.0", "amount": "2.08"}],
               "items": [{"name": "Pain", "confidence": 0.5}],
               "confidence": 0.4, "needs_review": True, "timings_ms": {"ocr": 12.5}}
    extracted = ev.extracted_event(receipt, "2026-11-25T10:00:00.000Z")
    jsonschema.validate(extracted, load_schema(EXTRACTED))
    review = ev.review_event(extracted, page(), [WordLabel("O", 0.9), WordLabel("total", 0.6)])
    jsonschema.validate(review, load_schema(REVIEW))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**extracted, "fields": {"nope": receipt["fields"]["total"]}},
                            load_schema(EXTRACTED))

    binary = b"\xff\xd8garbage"
    dl = ev.deadletter_event(binary, stage="ocr", code="not_an_image", message="x", receipt_id=None,
                             topic="receipts.uploaded", partition=0, offset=5)
    jsonschema.validate(dl, load_schema(DEADLETTER))
    assert base64.b64decode(dl["original"]["data"]) == binary and dl["original"]["encoding"] == "base64"
    big = b"a" * (ev.MAX_DEADLETTER_ORIGINAL + 10)
    dl = ev.deadletter_event(big, stage="extract", code="internal_error", message="y", receipt_id="r")
    assert dl["original"]["truncated"] and len(dl["original"]["data"]) == ev.MAX_DEADLETTER_ORIGINAL


def test_upload_schema_accepts_both_formats_and_topics_have_schemas() -> None:
    schema = load_schema(UPLOADED)
    jsonschema.validate(json.loads(ours()), schema)
    jsonschema.validate(json.loads(minio()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(ours(schema_version=2)), schema)
    for logical in LOGICAL_TOPICS:
        jsonschema.Draft202012Validator.check_schema(load_schema(logical))
        assert TOPICS[logical].schema_path().exists()


def test_receipt_id_hint() -> None:
    assert ev.receipt_id_hint(ours(schema_version=9)) == "r-001"
    assert ev.receipt_id_hint(b"\x00\x01") is None
    assert ev.receipt_id_hint(b'{"receipt_id": "bad id"}') is None


def test_asyncapi_document_matches_the_topics_and_schemas() -> None:
    from pathlib import Path

    import yaml

    from socratext.settings import Settings
    from streams.topics import SCHEMA_DIR, topic_names

    doc = yaml.safe_load((Path(__file__).resolve().parent.parent / "docs" / "asyncapi.yaml").read_text())
    assert {c["address"] for c in doc["channels"].values()} == set(topic_names(Settings()).values())
    refs = {m["payload"]["schema"]["$ref"].rsplit("/", 1)[1] for m in doc["components"]["messages"].values()}
    assert refs == {spec.schema for spec in TOPICS.values()}
    assert all((SCHEMA_DIR / r).exists() for r in refs)
    jsonschema.validate(doc["components"]["messages"]["ReceiptExtracted"]["examples"][0]["payload"],
                        load_schema(EXTRACTED))
    jsonschema.validate(doc["components"]["messages"]["ReceiptDeadLetter"]["examples"][0]["payload"],
                        load_schema(DEADLETTER))


def test_the_builders_write_every_property_their_schema_declares_and_the_parsers_read_them() -> None:
    """One contract, two writings: the JSON Schemas (what consumers are promised) and the builders and
    parsed records here. `additionalProperties: false` already refuses a key a builder adds without the
    schema; this catches the other way round — a property the schema declares that nothing writes, or
    that the parsed `OcrEvent` drops on the floor."""
    import dataclasses

    from PIL import Image

    up = ev.parse_upload(ours())[0]
    pg = page()
    ocr = ev.ocr_event(up, pg, 1, 1, {"ocr": 1.0}, image=Image.new("RGB", (40, 60), "white"),
                       rule_labels=[WordLabel("O", 0.9) for _ in pg.words])
    assert set(ocr) == set(load_schema(OCR)["properties"])
    envelope_only = {"schema_version", "parent_receipt_id"}  # checked, or not needed by stage 2
    read = {f.name for f in dataclasses.fields(ev.OcrEvent)} | {"page_image"}
    assert set(load_schema(OCR)["properties"]) - envelope_only <= read

    receipt = {"receipt_id": "r-001", "source": up.source, "model": {"name": "rules", "version": "1"},
               "fields": {}, "vat_lines": [], "items": [], "confidence": 0.4, "needs_review": True,
               "timings_ms": {}}
    extracted = ev.extracted_event(receipt, up.uploaded_at)
    replay_only = {"replay"}  # added by `socratext replay` (streams/replay.py) to what it re-publishes
    assert set(extracted) == set(load_schema(EXTRACTED)["properties"]) - replay_only
    review = ev.review_event(extracted, pg, [WordLabel("O", 0.9) for _ in pg.words], ocr["page_image"])
    assert set(review) == set(load_schema(REVIEW)["properties"])
    dead = ev.deadletter_event(b"{}", stage="ocr", code="x", message="y", receipt_id=None)
    assert set(dead) == set(load_schema(DEADLETTER)["properties"])
