"""Re-send dead-lettered events to the topic they failed on (runbook: docs/operations.md#replays).

    python deploy/tools/replay_deadletters.py --code storage_unavailable --dry-run
    python deploy/tools/replay_deadletters.py --code storage_unavailable --since 2026-11-25T08:00

Why a tool and not `kafka-console-producer`: a dead-letter event wraps the original value (UTF-8 text or
base64, see receipt_deadletter.v1.json) and its origin; replaying means unwrapping it and producing it,
keyed by the receipt id, to the origin topic — byte for byte what the worker first saw. Only transient
failures are worth replaying (the store was down, a model crashed); a `not_an_image` stays one.
Events whose original was cut (`truncated`) cannot be rebuilt and are reported, never sent.
Reads the whole dead-letter topic without a consumer group (nothing is committed, so it can be rerun);
the workers deduplicate by receipt id, so a replay that runs twice does no harm.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

TRANSIENT_CODES = ("storage_unavailable", "ocr_failed", "model_failed", "internal_error")


@dataclass(frozen=True)
class Replay:
    topic: str
    key: bytes | None
    value: bytes


@dataclass
class Plan:
    replays: list[Replay]
    skipped: dict[str, int]  # reason -> count


def original_bytes(event: dict[str, Any]) -> bytes:
    """The value the worker consumed, rebuilt from the dead-letter event."""
    original = event["original"]
    if original["encoding"] == "base64":
        return base64.b64decode(original["data"])
    if original["encoding"] == "utf-8":
        return original["data"].encode("utf-8")
    raise ValueError(f"unknown encoding {original['encoding']!r}")


def plan(events: Iterable[dict[str, Any]], *, codes: Iterable[str], stage_topics: dict[str, str],
         stage: str | None = None, since: str | None = None) -> Plan:
    """Which dead letters to re-send, and where. `stage_topics` maps a stage to its input topic, used
    when the event does not record its origin topic. `since` compares ISO timestamps (same format)."""
    wanted = set(codes)
    out: list[Replay] = []
    skipped: dict[str, int] = {}

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    for ev in events:
        if ev.get("code") not in wanted:
            skip("code not selected")
        elif stage and ev.get("stage") != stage:
            skip("other stage")
        elif since and str(ev.get("failed_at", "")) < since:
            skip("before --since")
        elif ev["original"].get("truncated"):
            skip("original truncated")
        else:
            topic = (ev.get("origin") or {}).get("topic") or stage_topics.get(ev.get("stage", ""))
            if not topic:
                skip("unknown origin topic")
                continue
            rid = ev.get("receipt_id")
            out.append(Replay(topic, rid.encode("utf-8") if rid else None, original_bytes(ev)))
    return Plan(out, skipped)


def read_all(settings: Any, topic: str, timeout_s: float = 10.0) -> Iterator[dict[str, Any]]:
    """Every value currently in `topic`, from the beginning to the end offsets read at start."""
    from kafka import KafkaConsumer, TopicPartition

    from socratext.kafka_config import kafka_python_kwargs

    consumer = KafkaConsumer(**kafka_python_kwargs(settings, group_id=None, enable_auto_commit=False,
                                                   isolation_level="read_committed",
                                                   consumer_timeout_ms=int(timeout_s * 1000)))
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        remaining = {tp for tp in parts if end[tp] > consumer.position(tp)}
        for msg in consumer:
            tp = TopicPartition(msg.topic, msg.partition)
            try:
                yield json.loads(msg.value)
            except ValueError:
                print(f"skipping unreadable dead letter at {tp} offset {msg.offset}", file=sys.stderr)
            if msg.offset + 1 >= end[tp]:
                remaining.discard(tp)
            if not remaining:
                break
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> int:
    from socratext.settings import get_settings

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--code", action="append", default=[],
                    help=f"error code to replay (repeatable; default: {', '.join(TRANSIENT_CODES)})")
    ap.add_argument("--stage", choices=("ocr", "extract"), default=None)
    ap.add_argument("--since", default=None, help="only failures at or after this ISO time (UTC)")
    ap.add_argument("--dry-run", action="store_true", help="count, send nothing")
    args = ap.parse_args(argv)
    settings = get_settings()
    stage_topics = {"ocr": settings.topic_uploaded, "extract": settings.topic_ocr}
    p = plan(read_all(settings, settings.topic_deadletter), codes=args.code or TRANSIENT_CODES,
             stage_topics=stage_topics, stage=args.stage, since=args.since)
    per_topic: dict[str, int] = {}
    for r in p.replays:
        per_topic[r.topic] = per_topic.get(r.topic, 0) + 1
    print(json.dumps({"replay": per_topic, "skipped": p.skipped, "dry_run": args.dry_run}))
    if args.dry_run or not p.replays:
        return 0
    from kafka import KafkaProducer

    from socratext.kafka_config import kafka_python_kwargs

    producer = KafkaProducer(**kafka_python_kwargs(settings, acks="all"))
    for r in p.replays:
        producer.send(r.topic, key=r.key, value=r.value)
    producer.flush()
    producer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
