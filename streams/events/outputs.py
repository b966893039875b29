"""What stage 2 publishes: extracted receipts, receipts to review and dead letters, each as an `OutEvent`
that remembers the input event (`Origin`) it answers."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from socratext.document import OcrPage
from socratext.privacy import mask_obj, mask_page, mask_pans
from socratext.timestamps import now_iso
from socratext.topics import SCHEMA_VERSION
from streams.events.envelope import dumps

MAX_DEADLETTER_ORIGINAL = 256 * 1024
"""The dead-letter event keeps at most this much of the original value (it must itself fit in Kafka)."""


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
