"""Collect: `receipts.review` → one review record per receipt in the object store.

    python -m training.review.collect            # run until stopped (Ctrl-C / SIGTERM)
    python -m training.review.collect --once     # drain what is on the topic now, then exit
    socratext review collect --once --timeout 60

A plain kafka-python consumer group (no Faust: one cheap loop, no stream state). Each low-confidence
receipt becomes `<review_dataset_prefix><receipt_id>.json` in the bucket (see `training.review.records`),
written only if absent, so a redelivered or re-extracted receipt is stored once — the first model's view
of it is what a reviewer corrects. Offsets are committed only after the batch's records are written: a
crash replays events, and the write-if-absent makes the replay harmless (at least once + idempotent =
exactly one record per receipt id).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from socratext.errors import SocratextError
from socratext.settings import Settings, get_settings
from socratext.storage import ObjectStore
from streams.events import load_json
from training.review.records import dumps, put_if_absent, record_key, review_record

log = logging.getLogger("socratext.review.collect")


@dataclass
class CollectStats:
    seen: int = 0
    written: int = 0
    existing: int = 0
    skipped: int = 0  # events that are not reviewable receipts (logged)
    ids: set[str] = field(default_factory=set)

    def summary(self) -> str:
        return (f"{self.seen} review events: {self.written} new records, {self.existing} already stored, "
                f"{self.skipped} skipped")


def store_event(raw: bytes, store: ObjectStore, settings: Settings, stats: CollectStats) -> str | None:
    """One `receipts.review` value → its record (if absent). Returns the receipt id, None when skipped."""
    stats.seen += 1
    try:
        rec = review_record(load_json(raw))
        key = record_key(settings.review_dataset_prefix, rec["receipt_id"])
    except SocratextError as exc:
        stats.skipped += 1
        log.warning("skipping review event: %s: %s", exc.code, exc.message)
        return None
    if put_if_absent(store, settings.s3_bucket, key, dumps(rec)):
        stats.written += 1
    else:
        stats.existing += 1
    stats.ids.add(rec["receipt_id"])
    return rec["receipt_id"]


def make_consumer(settings: Settings, group: str) -> Any:
    from kafka import KafkaConsumer

    from socratext.kafka_config import kafka_python_kwargs

    # read_committed: a review record of an aborted transaction (a killed worker's) is not a receipt
    return KafkaConsumer(settings.topic_review, **kafka_python_kwargs(
        settings, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest",
        max_poll_records=200, isolation_level="read_committed",
        session_timeout_ms=int(settings.kafka_session_timeout_s * 1000)))


def _caught_up(consumer: Any) -> bool:
    parts = consumer.assignment()
    if not parts:
        return False
    ends = consumer.end_offsets(list(parts))
    return all(consumer.position(tp) >= ends[tp] for tp in parts)


def collect(settings: Settings | None = None, *, group: str | None = None, once: bool = False,
            timeout_s: float | None = None, until: Callable[[CollectStats], bool] | None = None,
            store: ObjectStore | None = None, stop: Callable[[], bool] | None = None) -> CollectStats:
    """Consume `receipts.review` in the consumer group and store the records.

    Stops when `once` and the group's partitions are drained, when `until(stats)` holds, when
    `timeout_s` is over, or when `stop()` says so; runs forever otherwise."""
    settings = settings or get_settings()
    store = store or ObjectStore(settings)
    store.ensure_bucket(settings.s3_bucket)
    consumer = make_consumer(settings, group or settings.review_group)
    stats = CollectStats()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while True:
            batch = consumer.poll(timeout_ms=500)
            msgs = [m for part in batch.values() for m in part]
            for m in msgs:
                store_event(m.value, store, settings, stats)
            if msgs:
                consumer.commit()  # only after every record of the batch is written
            if until is not None and until(stats):
                break
            if once and not msgs and _caught_up(consumer):
                break
            if (deadline is not None and time.monotonic() > deadline) or (stop is not None and stop()):
                break
    finally:
        consumer.close()
    return stats


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--once", action="store_true", help="exit once the topic is drained")
    ap.add_argument("--timeout", type=float, default=None, help="exit after S seconds")
    ap.add_argument("--group", default=None, help="consumer group (default settings.review_group)")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stopping = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stopping.update(flag=True))
    try:
        stats = collect(get_settings(), group=args.group, once=args.once, timeout_s=args.timeout,
                        stop=lambda: stopping["flag"])
    except KeyboardInterrupt:
        return 130
    print(stats.summary(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
