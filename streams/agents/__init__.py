"""The two stream stages. Each module holds the stage's pure processing function (bytes in, `OutEvent`s
out, unit-tested with fakes) and a thin Faust agent that only moves data: consume, run the function in
the worker's thread pool, publish, and only then let Faust acknowledge the input.
"""

from __future__ import annotations

import logging
from typing import Any

from socratext.errors import INTERNAL, SocratextError
from streams.events import Origin, OutEvent, deadletter_event, receipt_id_hint
from streams.metrics import StreamMetrics
from streams.topics import DEADLETTER, OCR

log = logging.getLogger("streams")


def dead(raw: bytes, *, stage: str, exc: BaseException, receipt_id: str | None = None,
         origin: Origin | None = None, metrics: StreamMetrics | None = None,
         fallback_code: str = INTERNAL) -> OutEvent:
    """Turn a failure into a dead-letter event (keyed by the receipt id when known), count and log it."""
    if isinstance(exc, SocratextError):
        code, message = exc.code, exc.message
    else:  # a bug or an unexpected library error: still one receipt's problem, never the worker's
        code, message = fallback_code, f"{type(exc).__name__}: {exc}"
    rid = receipt_id or receipt_id_hint(raw)
    o = origin or Origin()
    value = deadletter_event(raw, stage=stage, code=code, message=message, receipt_id=rid,
                             topic=o.topic, partition=o.partition, offset=o.offset)
    if metrics is not None:
        metrics.deadletter.labels(code=code).inc()
        metrics.count(stage, "failed")
    log.warning("dead-lettered: %s", message, extra={"receipt_id": rid, "stage": stage, "code": code},
                exc_info=not isinstance(exc, SocratextError))
    return OutEvent(DEADLETTER, rid or f"{o.topic}:{o.partition}:{o.offset}", value, origin)


async def publish(outs: list[OutEvent], topics: dict[str, Any]) -> None:
    """Send every event and wait until Kafka has acknowledged each one.

    Called before the agent's loop moves on: Faust acknowledges (and later commits) the input offsets
    when the next iteration starts — for `take()` batches right after the batch is handed back — so
    awaiting the delivery futures here is what guarantees that an offset is never committed before the
    results it produced are durable (at-least-once: a crash in between replays the input instead).
    """
    pending = [(o, await topics[o.topic].send(key=o.key_bytes(), value=o.value_bytes())) for o in outs]
    failed = []
    for o, fut in pending:
        try:
            await fut
        except Exception as exc:  # e.g. MessageSizeTooLarge: that result is lost, the receipt must not be
            if o.topic == DEADLETTER:
                raise  # the broker itself is failing: let the agent crash rather than ack unpublished work
            stage = "ocr" if o.topic == OCR else "extract"
            failed.append(dead(o.value_bytes(), stage=stage, exc=exc, receipt_id=o.key))
    for d in failed:
        await (await topics[DEADLETTER].send(key=d.key_bytes(), value=d.value_bytes()))


def event_origin(event: Any) -> Origin:
    """Where a Faust event was read: its partition, offset and consumer-group generation."""
    m = event.message
    return Origin(m.topic, m.partition, m.offset, m.generation_id)


def track_consumption(stream: Any, delivery: Any) -> None:
    """Register each event with `delivery` the moment this agent instance takes it off the queue that
    the instances share (Faust runs a stream's processors then), not when its micro-batch is complete:
    an event waiting in one instance's batch buffer is in flight, and another instance's batch of the
    same partition must not commit an offset past it (it did: the event was then skipped as read
    again, and lost)."""

    def register(value: Any) -> Any:
        event = stream.current_event
        if event is not None:
            delivery.begin([event_origin(event)])
        return value

    stream.add_processor(register)

