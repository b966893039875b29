"""Every topic of the pipeline, the event schema each one carries and its partition count — declared
here and nowhere else.

The topics and their JSON Schemas (`socratext/schemas`) are the service's contract with the systems
around it, so they live in the library: the CLI's `upload` and `tail`, the local stack that creates the
topics and the Faust app that binds them (`streams.topics.declare`) all read them from here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from socratext.settings import Settings

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"  # package data of `socratext`

UPLOADED, OCR, EXTRACTED, REVIEW, DEADLETTER = "uploaded", "ocr", "extracted", "review", "deadletter"
LOGICAL_TOPICS: tuple[str, ...] = (UPLOADED, OCR, EXTRACTED, REVIEW, DEADLETTER)

SCHEMA_VERSION = 1
"""Version of every event we produce; consumers reject other versions with `unknown_schema_version`."""


@dataclass(frozen=True)
class TopicSpec:
    """A logical topic: its settings field (the Kafka name is configurable), the schema of its values and
    how many partitions it is created with."""

    logical: str
    settings_field: str
    schema: str  # file name in socratext/schemas
    description: str
    partitions: int

    def name(self, settings: Settings) -> str:
        return str(getattr(settings, self.settings_field))

    def schema_path(self) -> Path:
        return SCHEMA_DIR / self.schema


# The two topics that carry per-receipt work get 4 partitions, so up to 4 workers share them; the
# result, review and dead-letter topics are low volume and keep their order with 1.
TOPICS: dict[str, TopicSpec] = {
    UPLOADED: TopicSpec(UPLOADED, "topic_uploaded", "receipt_uploaded.v1.json",
                        "A receipt file is in the object store: our upload event v1 or MinIO's own "
                        "S3 `s3:ObjectCreated:*` notification.", 4),
    OCR: TopicSpec(OCR, "topic_ocr", "receipt_ocr.v1.json",
                   "One OCR'd page (words + boxes); a PDF gives one event per page, id `<id>-p<N>`.", 4),
    EXTRACTED: TopicSpec(EXTRACTED, "topic_extracted", "receipt_extracted.v1.json",
                         "The output contract (Receipt.export()) + schema_version, uploaded_at, "
                         "extracted_at.", 1),
    REVIEW: TopicSpec(REVIEW, "topic_review", "receipt_review.v1.json",
                      "Receipts below the review threshold, with OCR page and word labels "
                      "(retraining feed).", 1),
    DEADLETTER: TopicSpec(DEADLETTER, "topic_deadletter", "receipt_deadletter.v1.json",
                          "Anything that failed: original event, stable error code, message, stage.", 1),
}


def topic_names(settings: Settings) -> dict[str, str]:
    """Logical name → Kafka topic name for these settings."""
    return {k: spec.name(settings) for k, spec in TOPICS.items()}


def topic_partitions(settings: Settings) -> dict[str, int]:
    """Kafka topic name → partitions, for these settings."""
    return {spec.name(settings): spec.partitions for spec in TOPICS.values()}


def load_schema(logical: str) -> dict[str, Any]:
    return json.loads(TOPICS[logical].schema_path().read_text(encoding="utf-8"))
