"""The pipeline's topics bound to Faust; they are declared in `socratext.topics` (re-exported here).

The Kafka topics are typed `bytes` in, `bytes` out (raw key/value serializers): Faust would otherwise
decode JSON *before* our agent sees the message, and a malformed value would raise inside Faust's
deserialiser, where we can neither dead-letter it nor go on with the next one (the agent crashes or
the event is silently dropped). With raw bytes, `streams.events` parses and validates every value
itself and turns anything bad into a dead-letter event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from socratext.settings import Settings
from socratext.topics import (
    DEADLETTER,
    EXTRACTED,
    LOGICAL_TOPICS,
    OCR,
    REVIEW,
    SCHEMA_DIR,
    SCHEMA_VERSION,
    TOPICS,
    UPLOADED,
    TopicSpec,
    load_schema,
    topic_names,
    topic_partitions,
)

if TYPE_CHECKING:  # faust is an optional dependency (the `stream` extra)
    import faust

__all__ = ["DEADLETTER", "EXTRACTED", "LOGICAL_TOPICS", "OCR", "REVIEW", "SCHEMA_DIR", "SCHEMA_VERSION",
           "TOPICS", "UPLOADED", "TopicSpec", "declare", "load_schema", "topic_names", "topic_partitions"]


def declare(app: faust.App, settings: Settings) -> dict[str, faust.TopicT]:
    """The Faust topic objects, all raw bytes (see the module docstring for why), created with their
    declared partition counts where absent."""
    return {k: app.topic(spec.name(settings), key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw", partitions=spec.partitions)
            for k, spec in TOPICS.items()}
