"""`receipts.uploaded`: our upload event v1 and MinIO's S3 bucket notification, both parsed into one
`UploadEvent` (see the package docstring for the two shapes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from socratext.errors import MALFORMED_EVENT, UNKNOWN_SCHEMA_VERSION, SocratextError
from streams.events.envelope import check_receipt_id, check_version, load_json, parse_time
from streams.events.locations import check_filename, check_location, filename_from_metadata, s3_receipt_id


@dataclass(frozen=True)
class UploadEvent:
    """A receipt file waiting in the object store, whatever announced it."""

    receipt_id: str
    bucket: str
    key: str
    uploaded_at: str  # ISO 8601, UTC, "Z" suffix
    content_type: str | None = None
    size: int | None = None
    etag: str | None = None
    origin: str = "upload"  # "upload" (our event v1) or "s3" (bucket notification)
    filename: str | None = None  # the client's name of the file: the object key is our content-hash name

    @property
    def source(self) -> dict[str, str]:
        """Where the receipt came from, repeated by the OCR, extracted and review events: with the original
        file name when the upload gave one, so a consumer joins results to its files by it."""
        src = {"bucket": self.bucket, "key": self.key}
        if self.filename:
            src["filename"] = self.filename
        return src


def parse_upload(raw: bytes, allowed: frozenset[str] = frozenset({"*"})) -> list[UploadEvent]:
    """Parse a `receipts.uploaded` value into the uploads it announces.

    Our v1 event gives one; an S3 notification gives one per `ObjectCreated` record (MinIO sends one
    record per notification). Notifications of other kinds (deletions, test events) and "folder"
    markers give an empty list: nothing to do, and nothing wrong.
    """
    doc = load_json(raw)
    if not isinstance(doc, dict):
        raise SocratextError(MALFORMED_EVENT, f"event is a JSON {type(doc).__name__}, not an object")
    if "Records" in doc or "EventName" in doc:
        return _parse_s3_notification(doc, allowed)
    check_version(doc)
    receipt_id = check_receipt_id(doc.get("receipt_id"))
    bucket, key = check_location(doc.get("bucket"), doc.get("key"), allowed)
    uploaded_at = parse_time(doc.get("uploaded_at"))
    content_type = doc.get("content_type")
    if content_type is not None and (not isinstance(content_type, str) or len(content_type) > 255):
        raise SocratextError(MALFORMED_EVENT, "content_type must be a string")
    return [UploadEvent(receipt_id, bucket, key, uploaded_at, content_type, origin="upload",
                        filename=check_filename(doc.get("filename")))]


def _parse_s3_notification(doc: dict[str, Any], allowed: frozenset[str]) -> list[UploadEvent]:
    records = doc.get("Records")
    if not isinstance(records, list) or not records:
        raise SocratextError(MALFORMED_EVENT, "S3 notification without Records")
    out = []
    for rec in records:
        if not isinstance(rec, dict):
            raise SocratextError(MALFORMED_EVENT, "S3 notification record is not an object")
        version = rec.get("eventVersion", "2.0")
        if not isinstance(version, str) or not version.startswith("2."):
            raise SocratextError(UNKNOWN_SCHEMA_VERSION, f"S3 eventVersion {str(version)[:20]!r} is not 2.x")
        name = rec.get("eventName", doc.get("EventName"))
        if not isinstance(name, str):
            raise SocratextError(MALFORMED_EVENT, "S3 notification record has no eventName")
        if not name.removeprefix("s3:").startswith("ObjectCreated:"):
            continue  # deletions, test events...: not a receipt
        s3 = rec.get("s3")
        if not isinstance(s3, dict) or not isinstance(s3.get("bucket"), dict) \
                or not isinstance(s3.get("object"), dict):
            raise SocratextError(MALFORMED_EVENT, "S3 notification record has no s3.bucket/s3.object")
        obj = s3["object"]
        raw_key = obj.get("key")
        if not isinstance(raw_key, str):
            raise SocratextError(MALFORMED_EVENT, "S3 notification record has no object key")
        try:
            key = unquote_plus(raw_key, errors="strict") if "%" in raw_key or "+" in raw_key else raw_key
        except UnicodeDecodeError:
            raise SocratextError(MALFORMED_EVENT, "S3 object key is not URL-encoded UTF-8") from None
        if key.endswith("/"):
            continue  # a "folder" marker object
        bucket, key = check_location(s3["bucket"].get("name"), key, allowed)
        size, etag = obj.get("size"), obj.get("eTag", obj.get("etag"))
        if size is not None and (type(size) is not int or size < 0):
            raise SocratextError(MALFORMED_EVENT, "S3 object size is not a non-negative integer")
        if etag is not None and not isinstance(etag, str):
            raise SocratextError(MALFORMED_EVENT, "S3 object eTag is not a string")
        content_type = obj.get("contentType")
        content_type = content_type if isinstance(content_type, str) and len(content_type) <= 255 else None
        uploaded_at = parse_time(rec.get("eventTime"), "eventTime")
        filename = filename_from_metadata(obj.get("userMetadata"))
        out.append(UploadEvent(s3_receipt_id(bucket, key, etag), bucket, key, uploaded_at, content_type,
                               size, etag, origin="s3", filename=filename))
    return out
