"""What every event shares: the JSON codec (compact UTF-8, a size cap), the schema version, the receipt id
and the timestamps. Everything here returns a valid value or raises `SocratextError`."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

from socratext.errors import MALFORMED_EVENT, UNKNOWN_SCHEMA_VERSION, SocratextError
from socratext.timestamps import format_time
from socratext.topics import SCHEMA_VERSION

MAX_EVENT_BYTES = 1024 * 1024
"""Kafka's default message limit; anything bigger on an input topic is not one of ours."""
RECEIPT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


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


def check_version(doc: dict[str, Any]) -> None:
    version = doc.get("schema_version")
    if version is None:
        raise SocratextError(MALFORMED_EVENT, "event has no schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:  # bool is not a version
        raise SocratextError(UNKNOWN_SCHEMA_VERSION,
                             f"schema_version {str(version)[:20]!r} is not supported "
                             f"(expected {SCHEMA_VERSION})")


def check_receipt_id(value: Any) -> str:
    if not isinstance(value, str) or not RECEIPT_ID_RE.match(value):
        raise SocratextError(MALFORMED_EVENT, "receipt_id must match [A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
    return value


def receipt_id_hint(raw: bytes) -> str | None:
    """The receipt id of an event that failed validation, when one can be read (for the dead letter)."""
    try:
        doc = json.loads(bytes(raw[:MAX_EVENT_BYTES]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError, TypeError):
        return None
    rid = doc.get("receipt_id") if isinstance(doc, dict) else None
    return rid if isinstance(rid, str) and RECEIPT_ID_RE.match(rid) else None
