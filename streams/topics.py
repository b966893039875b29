"""Every topic of the pipeline and the event schema each one carries — declared here and nowhere else.

The Kafka topics are typed `bytes` in, `bytes` out (raw key/value serializers): Faust would otherwise
decode JSON *before* our agent sees the message, and a malformed value would raise inside Faust's
deserialiser, where we can neither dead-letter it nor go on with the next one (the agent crashes or
the event is silently dropped). With raw bytes, `streams.events` parses and validates every value
itself and turns anything bad into a dead-letter event.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import socratext
from socratext.settings import Settings

if TYPE_CHECKING:  # faust is an optional dependency (the `stream` extra)
    import faust

SCHEMA_DIR = Path(socratext.__file__).resolve().parent / "schemas"  # package data of `socratext`

UPLOADED, OCR, EXTRACTED, REVIEW, DEADLETTER = "uploaded", "ocr", "extracted", "review", "deadletter"
LOGICAL_TOPICS: tuple[str, ...] = (UPLOADED, OCR, EXTRACTED, REVIEW, DEADLETTER)

SCHEMA_VERSION = 1
"""Version of every event we produce; consumers reject other versions with `unknown_schema_version`."""


@dataclass(frozen=True)
class TopicSpec:
    """A logical topic: its settings field (the Kafka name is configurable) and the schema of its values."""

    logical: str
    settings_field: str
    schema: str  # file name in socratext/schemas
    description: str

    def name(self, settings: Settings) -> str:
        return str(getattr(settings, self.settings_field))

    def schema_path(self) -> Path:
        return SCHEMA_DIR / self.schema


TOPICS: dict[str, TopicSpec] = {
    UPLOADED: TopicSpec(UPLOADED, "topic_uploaded", "receipt_uploaded.v1.json",
                        "A receipt file is in the object store: our upload event v1 or MinIO's own "
                        "S3 `s3:ObjectCreated:*` notification."),
    OCR: TopicSpec(OCR, "topic_ocr", "receipt_ocr.v1.json",
                   "One OCR'd page (words + boxes); a PDF gives one event per page, id `<id>-p<N>`."),
    EXTRACTED: TopicSpec(EXTRACTED, "topic_extracted", "receipt_extracted.v1.json",
                         "The output contract (Receipt.export()) + schema_version, uploaded_at, "
                         "extracted_at."),
    REVIEW: TopicSpec(REVIEW, "topic_review", "receipt_review.v1.json",
                      "Receipts below the review threshold, with OCR page and word labels "
                      "(retraining feed)."),
    DEADLETTER: TopicSpec(DEADLETTER, "topic_deadletter", "receipt_deadletter.v1.json",
                          "Anything that failed: original event, stable error code, message, stage."),
}


def topic_names(settings: Settings) -> dict[str, str]:
    """Logical name → Kafka topic name for these settings."""
    return {k: spec.name(settings) for k, spec in TOPICS.items()}


def load_schema(logical: str) -> dict[str, Any]:
    import json

    return json.loads(TOPICS[logical].schema_path().read_text(encoding="utf-8"))


def declare(app: faust.App, settings: Settings) -> dict[str, faust.TopicT]:
    """The Faust topic objects, all raw bytes (see the module docstring for why)."""
    return {k: app.topic(spec.name(settings), key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")
            for k, spec in TOPICS.items()}
