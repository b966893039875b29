"""Pure parsing, validation and construction of the pipeline's events (no I/O, no Faust).

One module per job: `envelope` (JSON codec, schema version, ids, times), `locations` (bucket, key and
file name checks), `upload`, `ocr` and `outputs` (extracted, review, dead letter). Import from here.

Two upload formats arrive on `receipts.uploaded` and both become one internal `UploadEvent`:

* our own upload event v1 — `{"schema_version": 1, "receipt_id", "bucket", "key", "uploaded_at",
  "content_type"?, "filename"?}` (what `socratext upload` and client apps publish);
* MinIO's (S3-compatible) bucket notification — `{"EventName": "s3:ObjectCreated:Put", "Key": ...,
  "Records": [{"eventTime", "s3": {"bucket": {"name"}, "object": {"key", "size", "eTag"}}}]}` — for
  files dropped into the bucket by anything else. Its object key is URL-encoded, and its receipt id is
  derived from bucket/key/ETag, so a redelivered notification gets the same id (downstream dedups on the
  Kafka key) while a new version of the same key gets a new one.

Every function here either returns a valid value or raises `SocratextError` with a stable code
(malformed_event, unknown_schema_version, forbidden_key) — never another exception; the property
tests in tests/test_events.py hold it to that. The agents turn those errors into dead-letter events.
"""

from __future__ import annotations

from socratext.timestamps import format_time, now_iso
from streams.events.envelope import (
    MAX_EVENT_BYTES,
    RECEIPT_ID_RE,
    dumps,
    load_json,
    parse_time,
    receipt_id_hint,
    seconds_since,
)
from streams.events.locations import (
    BUCKET_RE,
    FILENAME_METADATA,
    allowed_buckets,
    check_filename,
    check_location,
    filename_from_metadata,
    s3_receipt_id,
)
from streams.events.ocr import (
    MAX_LINE_WORDS,
    MAX_PAGE_IMAGE_B64,
    MAX_PAGE_IMAGE_SIDE,
    MAX_PAGE_WORDS,
    MAX_WORD_CHARS,
    PAGE_IMAGE_SIDE,
    OcrEvent,
    ocr_event,
    page_image,
    page_receipt_id,
    parse_ocr,
    parse_page_image,
    parse_rule_labels,
    rule_labels_doc,
)
from streams.events.outputs import (
    MAX_DEADLETTER_ORIGINAL,
    Origin,
    OutEvent,
    deadletter_event,
    extracted_event,
    review_event,
)
from streams.events.upload import UploadEvent, parse_upload

__all__ = [
    "BUCKET_RE", "FILENAME_METADATA", "MAX_DEADLETTER_ORIGINAL", "MAX_EVENT_BYTES", "MAX_LINE_WORDS",
    "MAX_PAGE_IMAGE_B64", "MAX_PAGE_IMAGE_SIDE", "MAX_PAGE_WORDS", "MAX_WORD_CHARS", "PAGE_IMAGE_SIDE",
    "RECEIPT_ID_RE", "OcrEvent", "Origin", "OutEvent", "UploadEvent", "allowed_buckets", "check_filename",
    "check_location", "deadletter_event", "dumps", "extracted_event", "filename_from_metadata",
    "format_time", "load_json", "now_iso", "ocr_event", "page_image", "page_receipt_id", "parse_ocr",
    "parse_page_image", "parse_rule_labels", "parse_time", "parse_upload", "receipt_id_hint",
    "review_event", "rule_labels_doc", "s3_receipt_id", "seconds_since",
]
