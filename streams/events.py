"""Pure parsing, validation and construction of the pipeline's events (no I/O, no Faust).

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

import base64
import binascii
import hashlib
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote_plus

from socratext.document import OcrPage, WordLabel
from socratext.errors import FORBIDDEN_KEY, MALFORMED_EVENT, UNKNOWN_SCHEMA_VERSION, SocratextError
from socratext.privacy import mask_obj, mask_page, mask_pans
from streams.topics import SCHEMA_VERSION

MAX_EVENT_BYTES = 1024 * 1024
"""Kafka's default message limit; anything bigger on an input topic is not one of ours."""
MAX_DEADLETTER_ORIGINAL = 256 * 1024
"""The dead-letter event keeps at most this much of the original value (it must itself fit in Kafka)."""
PAGE_IMAGE_SIDE = 224
"""The page image an OCR event carries is what LayoutLMv2/v3 look at: 224×224 RGB (their boxes are
normalised to 0–1000, so the aspect ratio need not survive). A JPEG of it is 5–15 KB: sending it beats
fetching and decoding the full scan again in the extract stage."""
MAX_PAGE_IMAGE_B64 = 200_000
MAX_PAGE_IMAGE_SIDE = 1024
# What one OCR page may hold. Far above any receipt (a dense A4 invoice has ~1 000 words, ~30 a line),
# and far below what makes field assembly slow: a 1 MB event with 15 000 amounts on one line, or one
# 100 KB "word", kept an extraction worker busy for minutes (line parsing is not linear in the worst
# case). Stage 2 refuses such a page as malformed_event instead of stalling its batch.
MAX_PAGE_WORDS = 10_000
MAX_LINE_WORDS = 500
MAX_WORD_CHARS = 200

RECEIPT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


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


@dataclass(frozen=True)
class OcrEvent:
    """A parsed `receipts.ocr` event: one OCR'd page on its way to the extractor."""

    receipt_id: str
    source: dict[str, str]
    uploaded_at: str
    page: OcrPage
    page_number: int = 1
    page_count: int = 1
    timings_ms: dict[str, float] = field(default_factory=dict)
    image: Any = None  # PIL image of the page (`page_image`), for models that look at pixels
    page_image: dict[str, Any] | None = None  # the event's own `page_image`, passed on as it came
    # the rules' labels of the page, computed by the OCR stage (`rule_labels`); None when the event has
    # none or they come from another version of the rules than this worker's (it then runs its own)
    rule_labels: list[WordLabel] | None = None


@dataclass(frozen=True)
class Origin:
    """Where an input event came from: kept in its dead-letter event (so it can be found and replayed),
    and the input partition whose offset an output's transaction commits (`streams.delivery`)."""

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    generation: int | None = None
    """The consumer group generation in which it was fetched: after a rebalance Faust re-reads every
    partition from its committed offset, so a batch fetched before must not be committed after."""


@dataclass(frozen=True)
class OutEvent:
    """One message to publish: logical topic (see `streams.topics`), Kafka key (= receipt id), JSON value,
    and the input event it answers (exactly-once delivery commits it with that input's offset)."""

    topic: str
    key: str
    value: dict[str, Any]
    origin: Origin | None = field(default=None, compare=False)

    def key_bytes(self) -> bytes:
        return self.key.encode("utf-8")

    def value_bytes(self) -> bytes:
        return dumps(self.value)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def now_iso() -> str:
    return format_time(datetime.now(timezone.utc))


def format_time(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: Any, what: str = "uploaded_at") -> str:
    """Validate an ISO 8601 timestamp and normalise it to UTC with a `Z` (naive times are taken as UTC)."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        raise SocratextError(MALFORMED_EVENT, f"{what} must be an ISO 8601 timestamp string")
    try:
        dt = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise SocratextError(MALFORMED_EVENT,
                             f"{what} is not an ISO 8601 timestamp: {value[:40]!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:
        return format_time(dt)
    except (OverflowError, ValueError):  # year 1 in a far timezone
        raise SocratextError(MALFORMED_EVENT, f"{what} is out of range: {value[:40]!r}") from None


def seconds_since(iso: str, now: datetime | None = None) -> float | None:
    """Age of an event timestamp in seconds (None when it cannot be read)."""
    try:
        dt = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return ((now or datetime.now(timezone.utc)) - dt).total_seconds()


def allowed_buckets(spec: str) -> frozenset[str]:
    """`settings.s3_allowed_buckets` ("a,b") as a set; "*" allows any bucket."""
    return frozenset(b.strip() for b in spec.split(",") if b.strip())


def check_location(bucket: Any, key: Any, allowed: frozenset[str]) -> tuple[str, str]:
    """Validate an object location before anything fetches it.

    A producer must not make the worker read arbitrary objects: the bucket must be allowed, and the key
    must be a plain relative object name (no `..` segment, no leading `/`, no control characters).
    """
    if not isinstance(bucket, str) or not BUCKET_RE.match(bucket):
        raise SocratextError(MALFORMED_EVENT, f"bucket is not a valid bucket name: {str(bucket)[:80]!r}")
    if "*" not in allowed and bucket not in allowed:
        raise SocratextError(FORBIDDEN_KEY, f"bucket {bucket!r} is not in the allowed buckets")
    if not isinstance(key, str) or not key:
        raise SocratextError(MALFORMED_EVENT, "key must be a non-empty string")
    if len(key.encode("utf-8", "surrogatepass")) > 1024:
        raise SocratextError(FORBIDDEN_KEY, "key is longer than 1024 bytes")
    if (key.startswith("/") or "\\" in key or _CONTROL_RE.search(key)
            or any(part in ("..", ".") for part in key.split("/"))):
        raise SocratextError(FORBIDDEN_KEY, f"key {key[:80]!r} is not a plain relative object key")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from a \ud800 escape
        raise SocratextError(FORBIDDEN_KEY, "key is not valid Unicode") from None
    return bucket, key


FILENAME_METADATA = "filename"
"""The object's user metadata key (`x-amz-meta-filename`) holding its original file name, URL-encoded:
S3 metadata travels in HTTP headers, which carry ASCII only."""


def check_filename(value: Any) -> str | None:
    """An upload's original file name: None when absent, else a plain base name (no directory, no control
    characters, at most 255 characters) — it is repeated in every downstream event and shown to people."""
    if value is None:
        return None
    if (not isinstance(value, str) or not 0 < len(value) <= 255 or "/" in value or "\\" in value
            or _CONTROL_RE.search(value)):
        raise SocratextError(MALFORMED_EVENT, "filename must be a base name of 1 to 255 characters")
    return value


def filename_from_metadata(metadata: Any) -> str | None:
    """The original file name in an S3 notification's `userMetadata` (what `socratext upload` sets), or
    None when absent or unusable: a notification is not rejected for its metadata."""
    if not isinstance(metadata, dict):
        return None
    for k, v in metadata.items():
        if isinstance(k, str) and k.lower() in (FILENAME_METADATA, f"x-amz-meta-{FILENAME_METADATA}"):
            try:
                return check_filename(unquote_plus(v, errors="strict") if isinstance(v, str) else None)
            except (SocratextError, UnicodeDecodeError):
                return None
    return None


def load_json(raw: bytes) -> Any:
    """Decode one event value; anything that is not a JSON document becomes `malformed_event`."""
    if not isinstance(raw, bytes | bytearray):
        raise SocratextError(MALFORMED_EVENT, f"event value is {type(raw).__name__}, not bytes")
    if len(raw) > MAX_EVENT_BYTES:
        raise SocratextError(MALFORMED_EVENT, f"event is {len(raw)} bytes, over {MAX_EVENT_BYTES}")
    try:
        return json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SocratextError(MALFORMED_EVENT, f"event is not UTF-8 JSON: {str(exc)[:120]}") from None


def _check_version(doc: dict[str, Any]) -> None:
    version = doc.get("schema_version")
    if version is None:
        raise SocratextError(MALFORMED_EVENT, "event has no schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:  # bool is not a version
        raise SocratextError(UNKNOWN_SCHEMA_VERSION,
                             f"schema_version {str(version)[:20]!r} is not supported "
                             f"(expected {SCHEMA_VERSION})")


def _check_receipt_id(value: Any) -> str:
    if not isinstance(value, str) or not RECEIPT_ID_RE.match(value):
        raise SocratextError(MALFORMED_EVENT, "receipt_id must match [A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
    return value


def s3_receipt_id(bucket: str, key: str, etag: str | None) -> str:
    """Deterministic id of an object version: a redelivered notification maps to the same receipt."""
    digest = hashlib.sha256(f"{bucket}\n{key}\n{etag or ''}".encode("utf-8", "surrogatepass")).hexdigest()
    return f"s3-{digest[:24]}"


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
    _check_version(doc)
    receipt_id = _check_receipt_id(doc.get("receipt_id"))
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


def parse_ocr(raw: bytes, *, decode_image: bool = True) -> OcrEvent:
    """Parse a `receipts.ocr` value (produced by stage 1, but still checked: topics are shared).

    `decode_image=False` (an extractor that never looks at pixels) checks the `page_image`'s form and
    header but leaves its pixels undecoded: `image` is then None, `page_image` still passed on."""
    doc = load_json(raw)
    if not isinstance(doc, dict):
        raise SocratextError(MALFORMED_EVENT, f"event is a JSON {type(doc).__name__}, not an object")
    _check_version(doc)
    receipt_id = _check_receipt_id(doc.get("receipt_id"))
    source = doc.get("source")
    if not isinstance(source, dict) or not all(isinstance(v, str) for v in source.values()):
        raise SocratextError(MALFORMED_EVENT, "source must be an object of strings")
    uploaded_at = parse_time(doc.get("uploaded_at"))
    try:
        page = OcrPage.from_dict(doc["page"])
        page_number, page_count = int(doc.get("page_number", 1)), int(doc.get("page_count", 1))
        timings = {str(k): float(v) for k, v in (doc.get("timings_ms") or {}).items()}
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise SocratextError(MALFORMED_EVENT, f"invalid OCR page: {type(exc).__name__}: {str(exc)[:120]}") \
            from None
    _check_page_size(page)
    raw_image = doc.get("page_image")
    image = parse_page_image(raw_image, decode=decode_image) if raw_image is not None else None
    rule_labels = parse_rule_labels(doc["rule_labels"], len(page.words)) if "rule_labels" in doc else None
    return OcrEvent(receipt_id, dict(source), uploaded_at, page, page_number, page_count, timings, image,
                    raw_image, rule_labels)


def rule_labels_doc(labels: list[WordLabel]) -> dict[str, Any]:
    """An OCR event's `rule_labels`: the rules extractor's label and probability of every word of the
    (masked) page, and which rules gave them (`socratext.extractors.rules.rules_id`)."""
    from socratext.extractors.rules import rules_id

    return {"rules": rules_id(), "labels": [w.label for w in labels],
            "probabilities": [w.probability for w in labels]}


def parse_rule_labels(doc: Any, n_words: int) -> list[WordLabel] | None:
    """`rule_labels` → one `WordLabel` per word; None when other rules than this worker's gave them (a
    rolling upgrade, a replay of older events: the extraction stage then labels the page itself).
    Anything malformed (count, unknown label, probability outside [0, 1]) is a malformed event."""
    from socratext.extractors.rules import rules_id
    from socratext.labels import WORD_LABELS

    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), str) \
            or not isinstance(doc.get("labels"), list) or not isinstance(doc.get("probabilities"), list):
        raise SocratextError(MALFORMED_EVENT,
                             "rule_labels must be {rules, labels: [...], probabilities: [...]}")
    labels, probs = doc["labels"], doc["probabilities"]
    if len(labels) != n_words or len(probs) != n_words:
        raise SocratextError(MALFORMED_EVENT, f"rule_labels has {len(labels)} labels and {len(probs)} "
                                              f"probabilities for {n_words} words")
    known = set(WORD_LABELS)
    if not all(isinstance(x, str) and x in known for x in labels):
        raise SocratextError(MALFORMED_EVENT, "rule_labels names a label that is not a word label")
    if not all(isinstance(p, int | float) and not isinstance(p, bool) and 0.0 <= p <= 1.0 for p in probs):
        raise SocratextError(MALFORMED_EVENT, "rule_labels probabilities must be numbers in [0, 1]")
    if doc["rules"] != rules_id():
        return None
    return [WordLabel(x, float(p)) for x, p in zip(labels, probs, strict=True)]


def page_image(img: Any) -> dict[str, Any]:
    """An OCR event's `page_image`: the page the boxes refer to, `PAGE_IMAGE_SIDE` square, JPEG, base64.
    At that size no printed digit is legible, so it needs no masking (the words do, see privacy)."""
    from PIL import Image

    small = img.convert("RGB").resize((PAGE_IMAGE_SIDE, PAGE_IMAGE_SIDE), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=85)
    return {"media_type": "image/jpeg", "width": PAGE_IMAGE_SIDE, "height": PAGE_IMAGE_SIDE,
            "data": base64.b64encode(buf.getvalue()).decode("ascii")}


def parse_page_image(doc: Any, *, decode: bool = True) -> Any:
    """`page_image` → RGB PIL image; anything else than a small JPEG/PNG in base64 is a malformed event.
    `decode=False`: the same checks of form, base64, image header and size, but no pixels decoded
    (returns None): most of the cost, for a model that would not look at them."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(doc, dict) or doc.get("media_type") not in ("image/jpeg", "image/png") \
            or not isinstance(doc.get("data"), str):
        raise SocratextError(MALFORMED_EVENT, "page_image must be {media_type: image/jpeg|image/png, data}")
    if len(doc["data"]) > MAX_PAGE_IMAGE_B64:
        raise SocratextError(MALFORMED_EVENT, f"page_image is over {MAX_PAGE_IMAGE_B64} base64 characters")
    try:
        img = Image.open(io.BytesIO(base64.b64decode(doc["data"], validate=True)))
        if max(img.size) > MAX_PAGE_IMAGE_SIDE:  # read from the header: refused before decoding pixels
            raise SocratextError(MALFORMED_EVENT, f"page_image is {img.size[0]}x{img.size[1]}, over "
                                                  f"{MAX_PAGE_IMAGE_SIDE} px a side")
        return img.convert("RGB") if decode else None
    except (binascii.Error, ValueError, OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise SocratextError(MALFORMED_EVENT, f"page_image is not a readable image: {type(exc).__name__}") \
            from None


def _check_page_size(page: OcrPage) -> None:
    """Refuse pages beyond `MAX_PAGE_WORDS` / `MAX_LINE_WORDS` / `MAX_WORD_CHARS` (see there why)."""
    if len(page.words) > MAX_PAGE_WORDS:
        raise SocratextError(MALFORMED_EVENT, f"OCR page has {len(page.words)} words, over {MAX_PAGE_WORDS}")
    longest = max((len(w.text) for w in page.words), default=0)
    if longest > MAX_WORD_CHARS:
        raise SocratextError(MALFORMED_EVENT,
                             f"OCR page has a {longest}-character word, over {MAX_WORD_CHARS}")
    per_line = Counter(w.line_id for w in page.words)
    line, n = max(per_line.items(), key=lambda kv: kv[1], default=(0, 0))
    if n > MAX_LINE_WORDS:
        raise SocratextError(MALFORMED_EVENT, f"OCR line {line} has {n} words, over {MAX_LINE_WORDS}")


def receipt_id_hint(raw: bytes) -> str | None:
    """The receipt id of an event that failed validation, when one can be read (for the dead letter)."""
    try:
        doc = json.loads(bytes(raw[:MAX_EVENT_BYTES]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError, TypeError):
        return None
    rid = doc.get("receipt_id") if isinstance(doc, dict) else None
    return rid if isinstance(rid, str) and RECEIPT_ID_RE.match(rid) else None


# --- output events -------------------------------------------------------------------------------------

def page_receipt_id(receipt_id: str, page_number: int, page_count: int) -> str:
    """A multi-page PDF is one receipt per page: `<id>-p<N>` (1-based); a single page keeps its id."""
    return receipt_id if page_count == 1 else f"{receipt_id}-p{page_number}"


def ocr_event(upload: UploadEvent, page: OcrPage, page_number: int, page_count: int,
              timings_ms: dict[str, float], image: Any = None, rule_labels: list[WordLabel] | None = None,
              ) -> dict[str, Any]:
    """A `receipts.ocr` value; `image` (the page the boxes refer to) becomes its `page_image`,
    `rule_labels` (the rules' labels of the page as masked here) its `rule_labels`."""
    extra: dict[str, Any] = {"page_image": page_image(image)} if image is not None else {}
    if rule_labels is not None:
        if len(rule_labels) != len(page.words):
            raise ValueError(f"{len(rule_labels)} rule labels for {len(page.words)} words")
        extra["rule_labels"] = rule_labels_doc(rule_labels)
    return {
        "schema_version": SCHEMA_VERSION,
        "receipt_id": page_receipt_id(upload.receipt_id, page_number, page_count),
        "parent_receipt_id": upload.receipt_id,
        "source": upload.source,
        "uploaded_at": upload.uploaded_at,
        "page_number": page_number,
        "page_count": page_count,
        "page": mask_page(page).export(),  # no card number leaves the OCR stage (socratext.privacy)
        "timings_ms": {k: round(float(v), 2) for k, v in timings_ms.items()},
        **extra,
    }


def extracted_event(receipt: dict[str, Any], uploaded_at: str, extracted_at: str | None = None,
                    ) -> dict[str, Any]:
    """The output contract (`Receipt.export()`) plus the stream's envelope fields."""
    texts = {k: mask_obj(receipt[k]) for k in ("fields", "items", "vat_lines") if k in receipt}
    return {"schema_version": SCHEMA_VERSION, **receipt, **texts, "uploaded_at": uploaded_at,
            "extracted_at": extracted_at or now_iso()}


def review_event(extracted: dict[str, Any], page: OcrPage, labels: list[Any],
                 page_image_doc: dict[str, Any] | None = None) -> dict[str, Any]:
    """A receipt for human review: what we extracted, and the words + labels to correct (retraining feed).
    The OCR event's `page_image` travels on unchanged (no second JPEG encoding), so that a model retrained
    on the reviewed receipt sees the pixels it will see in service."""
    extra = {"page_image": page_image_doc} if page_image_doc is not None else {}
    return {
        "schema_version": SCHEMA_VERSION,
        "receipt_id": extracted["receipt_id"],
        "source": extracted["source"],
        "uploaded_at": extracted["uploaded_at"],
        "extracted_at": extracted["extracted_at"],
        "receipt": extracted,
        "page": mask_page(page).export(),
        "word_labels": [{"label": lab.label, "probability": round(float(lab.probability), 4)}
                        for lab in labels],
        **extra,
    }


def deadletter_event(original: bytes, *, stage: str, code: str, message: str, receipt_id: str | None,
                     topic: str | None = None, partition: int | None = None, offset: int | None = None,
                     ) -> dict[str, Any]:
    """A failure, with what is needed to replay it: the original value (text when it is UTF-8, else
    base64; cut at `MAX_DEADLETTER_ORIGINAL`), where it came from, and the stable error code."""
    data = bytes(original[:MAX_DEADLETTER_ORIGINAL])
    try:
        enc, text = "utf-8", data.decode("utf-8")
    except UnicodeDecodeError:
        enc, text = "base64", base64.b64encode(data).decode("ascii")
    return {
        "schema_version": SCHEMA_VERSION,
        "receipt_id": receipt_id,
        "stage": stage,
        "code": code,
        "message": mask_pans(message[:2000]),  # the original stays as it came: a replay needs it
        "failed_at": now_iso(),
        "origin": {"topic": topic, "partition": partition, "offset": offset},
        "original": {"encoding": enc, "data": text, "size": len(original),
                     "truncated": len(original) > MAX_DEADLETTER_ORIGINAL},
    }
