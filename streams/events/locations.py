"""Where a receipt file is: the bucket and key an event names are checked before anything fetches them
(a producer must not make a worker read arbitrary objects), and the client's original file name."""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import unquote_plus

from socratext.errors import FORBIDDEN_KEY, MALFORMED_EVENT, SocratextError

BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


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


def s3_receipt_id(bucket: str, key: str, etag: str | None) -> str:
    """Deterministic id of an object version: a redelivered notification maps to the same receipt."""
    digest = hashlib.sha256(f"{bucket}\n{key}\n{etag or ''}".encode("utf-8", "surrogatepass")).hexdigest()
    return f"s3-{digest[:24]}"
