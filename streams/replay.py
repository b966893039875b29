"""Replay: re-extract the receipts OCR'd in a time range with another model, without OCR'ing them again.

    socratext replay --since 2026-11-25T08:00 --until 2026-11-25T12:00 --model registry:receipts@v7

`receipts.ocr` keeps every page's words and boxes, which is all an extractor needs, so a new model can be
tried on (or rolled out to) past receipts for the cost of the model call alone. The range is read
without a consumer group (nothing is committed, no worker is disturbed): per partition, from the first
record at or after `since` (Kafka's `offsets_for_times`, i.e. the OCR stage's publish time) up to the
first record at or after `until`, or the partition's end when the replay started — so a replay always
ends, even while the workers keep writing. Each page goes through `process_extract_batch`, the very
function of the extraction workers, in micro-batches. (An operations tool of the streaming service, so it
lives here, beside the workers, and not in the `socratext` library; `socratext.cli` mounts `replay_cmd`.
The Kafka and worker modules are imported when a replay runs, not when the CLI starts.)

Output: the extracted events as JSON Lines on stdout, or with `publish=True` on `receipts.extracted`
(keyed by receipt id, so they supersede the earlier events in a compacted topic). Each carries a
`replay` marker ({since, until, replayed_at}) and the model that produced it. A receipt id seen twice in
the range (an at-least-once redelivery) is replayed once. Review and dead-letter events are not
produced: a replay must not flood reviewers nor fill the dead-letter topic with things nobody uploaded
again; failures are reported on stderr and in the returned counts.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import typer
from rich.console import Console

from socratext.errors import MALFORMED_EVENT, SocratextError
from socratext.settings import Settings, get_settings
from socratext.timestamps import format_time, now_iso

err = Console(stderr=True)
STALL_S = 60.0
"""Give up when a partition that still has records to read returns nothing for this long."""


def parse_when(value: str | datetime, what: str = "time") -> datetime:
    """ISO 8601 (a naive time is UTC) → aware UTC datetime; anything else is a clear error."""
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value).strip().replace("z", "Z"))
        except ValueError:
            raise SocratextError(MALFORMED_EVENT, f"{what} {value!r} is not an ISO 8601 time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def to_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


@dataclass
class Record:
    """One `receipts.ocr` record of the range: its value and where it was (for error reports)."""

    value: bytes
    topic: str
    partition: int
    offset: int
    timestamp_ms: int


def plan_ranges(partitions: list[int], start: dict[int, int | None], until: dict[int, int | None],
                end: dict[int, int]) -> dict[int, tuple[int, int]]:
    """Per partition, the half-open offset range [first, last) to read (pure; empty ranges left out).

    `start[p]`: first offset with timestamp >= since (None: no such record); `until[p]`: first offset with
    timestamp >= until (None: none yet, read to `end[p]`, the end offset when the replay started)."""
    out = {}
    for p in partitions:
        first = start.get(p)
        if first is None:
            continue
        last = until.get(p)
        last = end[p] if last is None else min(last, end[p])
        if last > first:
            out[p] = (first, last)
    return out


def read_range(settings: Settings, since: datetime, until: datetime, topic: str | None = None,
               consumer: Any = None, stall_s: float = STALL_S) -> Iterator[Record]:
    """Yield the records of `topic` (default `receipts.ocr`) whose Kafka timestamp is in [since, until)."""
    from kafka import KafkaConsumer, TopicPartition

    topic = topic or settings.topic_ocr
    own = consumer is None
    if own:
        from socratext.kafka_config import kafka_python_kwargs

        consumer = KafkaConsumer(**kafka_python_kwargs(settings, group_id=None, enable_auto_commit=False,
                                                       isolation_level="read_committed",
                                                       max_poll_records=200))
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or [])
        if not parts:
            raise SocratextError(MALFORMED_EVENT, f"topic {topic!r} does not exist")
        tps = {p: TopicPartition(topic, p) for p in parts}
        since_ms, until_ms = to_ms(since), to_ms(until)
        end = {tp.partition: off for tp, off in consumer.end_offsets(list(tps.values())).items()}

        def first_at(ms: int) -> dict[int, int | None]:
            found = consumer.offsets_for_times({tp: ms for tp in tps.values()})
            return {tp.partition: (o.offset if o is not None else None) for tp, o in found.items()}

        ranges = plan_ranges(parts, first_at(since_ms), first_at(until_ms), end)
        if not ranges:
            return
        consumer.assign([tps[p] for p in ranges])
        for p, (first, _) in ranges.items():
            consumer.seek(tps[p], first)
        todo = dict(ranges)
        last_progress = time.monotonic()
        while todo:
            batch = consumer.poll(timeout_ms=500)
            for tp, msgs in batch.items():
                if tp.partition not in todo:
                    continue
                _, last = todo[tp.partition]
                for m in msgs:
                    if m.offset >= last:
                        break
                    if since_ms <= m.timestamp < until_ms:
                        yield Record(m.value, tp.topic, tp.partition, m.offset, m.timestamp)
            for p in list(todo):
                # position, not the last record's offset: transaction markers and compacted-away
                # records take offsets too, and the position moves past them
                if consumer.position(tps[p]) >= todo[p][1]:
                    del todo[p]
                    consumer.pause(tps[p])
            if batch:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > stall_s:
                raise SocratextError(MALFORMED_EVENT, f"replay stalled: partitions {sorted(todo)} of {topic} "
                                                      f"returned nothing for {stall_s:.0f} s")
    finally:
        if own:
            consumer.close()


@dataclass
class ReplayStats:
    records: int = 0
    extracted: int = 0
    duplicates: int = 0
    failed: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)


def replay(settings: Settings, since: datetime, until: datetime, extractor: Any,
           emit: Callable[[dict[str, Any]], None], batch_size: int | None = None,
           records: Iterator[Record] | None = None) -> ReplayStats:
    """Re-extract the OCR records of [since, until) with `extractor`; `emit(event)` gets each extracted
    event (with its `replay` marker). Dead letters are counted in the stats, not emitted."""
    from socratext.pipeline import load_known_values
    from streams.agents import Origin
    from streams.agents.extract import ExtractDeps, process_extract_batch
    from streams.events import receipt_id_hint
    from streams.topics import DEADLETTER, EXTRACTED

    deps = ExtractDeps(settings, extractor, known=load_known_values(settings.known_values, settings))
    marker = {"since": format_time(since), "until": format_time(until), "replayed_at": now_iso()}
    size = batch_size or settings.batch_size
    stats = ReplayStats()
    seen: set[str] = set()
    pending: list[Record] = []

    def flush() -> None:
        if not pending:
            return
        origins = [Origin(r.topic, r.partition, r.offset) for r in pending]
        for out in process_extract_batch([r.value for r in pending], deps, origins):
            if out.topic == EXTRACTED:
                stats.extracted += 1
                emit({**out.value, "replay": marker})
            elif out.topic == DEADLETTER:
                stats.failed += 1
                v = out.value
                stats.failures.append({"receipt_id": v.get("receipt_id"), "code": v.get("code"),
                                       "message": v.get("message"), "origin": v.get("origin")})
        pending.clear()

    for rec in records if records is not None else read_range(settings, since, until):
        stats.records += 1
        rid = receipt_id_hint(rec.value)
        if rid is not None:
            if rid in seen:
                stats.duplicates += 1
                continue
            seen.add(rid)
        pending.append(rec)
        if len(pending) >= size:
            flush()
    flush()
    return stats


def replay_cmd(
    since: str = typer.Option(..., "--since", help="Start of the range (ISO 8601, UTC when no offset)."),
    until: str = typer.Option(None, "--until", help="End of the range, exclusive (default: now)."),
    model: str = typer.Option(None, "--model", "-m",
                              help="registry:<name>[@<version>], a model directory, 'default' or 'rules'; "
                                   "default SOCRATEXT_MODEL."),
    publish: bool = typer.Option(False, "--publish",
                                 help="Send the events to receipts.extracted instead of printing them."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Pages per model call."),
) -> None:
    """Re-extract the receipts OCR'd between --since and --until with --model (no new OCR).

    Prints the extracted events as JSON Lines (or publishes them), a summary on stderr; exit code 1 when
    some page failed."""
    from socratext.pipeline import load_extractor

    settings = get_settings()
    try:
        t0 = parse_when(since, "--since")
        t1 = parse_when(until, "--until") if until else datetime.now(timezone.utc)
    except SocratextError as exc:
        raise typer.BadParameter(exc.message) from None
    if t1 <= t0:
        raise typer.BadParameter("--until must be after --since")
    extractor = load_extractor(model or settings.model, settings)
    err.print(f"replaying {settings.topic_ocr} [{format_time(t0)}, {format_time(t1)}) with {extractor.name} "
              f"{extractor.version}", highlight=False)
    producer = None
    if publish:
        from socratext.cli_stream import make_producer

        producer = make_producer(settings)

    def emit(event: dict[str, Any]) -> None:
        data = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if producer is not None:
            producer.send(settings.topic_extracted, key=event["receipt_id"].encode(), value=data)
        else:
            sys.stdout.write(data.decode("utf-8") + "\n")
            sys.stdout.flush()

    try:
        stats = replay(settings, t0, t1, extractor, emit, batch_size)
        if producer is not None:
            producer.flush(timeout=60)
    finally:
        if producer is not None:
            producer.close(timeout=10)
    for f in stats.failures:
        err.print(f"[red]failed[/red] {f['receipt_id']}: {f['code']}: {f['message']}", highlight=False,
                  soft_wrap=True)
    where = f"published to {settings.topic_extracted}" if publish else "printed"
    err.print(f"{stats.records} OCR record(s) in range: {stats.extracted} extracted ({where}), "
              f"{stats.duplicates} duplicate(s) skipped, {stats.failed} failed", highlight=False)
    raise typer.Exit(1 if stats.failed else 0)
