"""Errors with machine-readable codes: the CLI prints them, the stream sends them to the dead-letter topic.

One exception type with a stable `code` lets every stage fail the same way, and lets the dead-letter
consumer (and the tests) tell a corrupt image from a missing object without parsing messages.
"""

from __future__ import annotations

# Codes are part of the dead-letter event contract: add new ones, never rename.
NOT_AN_IMAGE = "not_an_image"
EMPTY_FILE = "empty_file"
TRUNCATED_IMAGE = "truncated_image"
IMAGE_TOO_LARGE = "image_too_large"
FILE_TOO_LARGE = "file_too_large"
UNSUPPORTED_PDF = "unsupported_pdf"
TOO_MANY_PAGES = "too_many_pages"
OBJECT_NOT_FOUND = "object_not_found"
FILE_NOT_FOUND = "not_found"  # a local path given to the CLI
IO_ERROR = "io_error"
ACCESS_DENIED = "access_denied"
STORAGE_UNAVAILABLE = "storage_unavailable"
MALFORMED_EVENT = "malformed_event"
UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"
FORBIDDEN_KEY = "forbidden_key"
OCR_FAILED = "ocr_failed"
MODEL_FAILED = "model_failed"
INTERNAL = "internal_error"


class SocratextError(Exception):
    """A failure tied to one receipt, with a stable code from this module."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
