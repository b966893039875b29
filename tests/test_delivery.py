"""Exactly-once delivery (streams/delivery.py) with a recording fake producer: which outputs and offsets
go into which transaction, the commit order inside a partition, and what is dropped or stops the worker.
The same code against the real broker: tests/test_faults.py (kill points, rebalance, broker restart)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("aiokafka")

from aiokafka.errors import MessageSizeTooLargeError, ProducerFenced  # noqa: E402

from socratext.settings import Settings  # noqa: E402
from streams.delivery import Transactions, transactional_id  # noqa: E402
from streams.events import Origin, OutEvent  # noqa: E402
from streams.metrics import StreamMetrics  # noqa: E402
from streams.topics import DEADLETTER, EXTRACTED, OCR, REVIEW, topic_names  # noqa: E402

SETTINGS = Settings()
NAMES = topic_names(SETTINGS)
IN = SETTINGS.topic_ocr


class FakeProducer:
    """Records each transaction: what was sent in it, the offsets it commits, and how it ended."""

    def __init__(self, txn_id: str, log: list[dict[str, Any]], *, fail_on: str | None = None,
                 too_large: set[str] | None = None, gate: asyncio.Event | None = None) -> None:
        self.txn_id, self.log = txn_id, log
        self.fail_on, self.too_large, self.gate = fail_on, too_large or set(), gate
        self.started = self.stopped = False
        self.current: dict[str, Any] | None = None

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def flush(self) -> None:
        pass

    def transaction(self) -> Any:
        producer = self

        class Txn:
            async def __aenter__(self) -> None:
                producer.current = {"id": producer.txn_id, "sent": [], "offsets": None, "end": None}

            async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
                assert producer.current is not None
                if exc_type is None and producer.gate is not None:
                    await producer.gate.wait()
                if exc_type is None and producer.fail_on == "commit":
                    producer.current["end"] = "aborted"
                    producer.log.append(producer.current)
                    raise RuntimeError("commit failed")
                producer.current["end"] = "committed" if exc_type is None else "aborted"
                producer.log.append(producer.current)

        return Txn()

    async def send(self, topic: str, key: bytes, value: bytes) -> asyncio.Future[None]:
        assert self.current is not None, "a send outside a transaction"
        if key.decode() in self.too_large and topic != NAMES[DEADLETTER]:
            raise MessageSizeTooLargeError("too large")
        if self.fail_on == "fenced":
            raise ProducerFenced()
        self.current["sent"].append((topic, key.decode()))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    async def send_offsets_to_transaction(self, offsets: dict[Any, int], group_id: str) -> None:
        assert self.current is not None
        self.current["offsets"] = ({(tp.topic, tp.partition): off for tp, off in offsets.items()}, group_id)


def make(log: list[dict[str, Any]], generation: int | None = 1, fatal: list[BaseException] | None = None,
         metrics: StreamMetrics | None = None, **producer_kw: Any,
         ) -> tuple[Transactions, dict[str, FakeProducer]]:
    producers: dict[str, FakeProducer] = {}

    def new(txn_id: str) -> FakeProducer:
        producers[txn_id] = FakeProducer(txn_id, log, **producer_kw)
        return producers[txn_id]

    txn = Transactions(SETTINGS, app_id="socratext", group_id="socratext", input_topic=IN, topic_names=NAMES,
                       metrics=metrics, generation=lambda: generation, make_producer=new,
                       on_fatal=(fatal.append if fatal is not None else lambda exc: None))
    return txn, producers


def origin(partition: int, offset: int, generation: int | None = 1) -> Origin:
    return Origin(IN, partition, offset, generation)


def out(topic: str, key: str, o: Origin) -> OutEvent:
    return OutEvent(topic, key, {"receipt_id": key}, o)


def test_one_transaction_per_input_partition_with_its_outputs_and_next_offset() -> None:
    async def go() -> list[dict[str, Any]]:
        log: list[dict[str, Any]] = []
        txn, producers = make(log)
        origins = [origin(0, 10), origin(1, 4), origin(0, 11)]
        txn.begin(origins)
        await txn.deliver(origins, [out(EXTRACTED, "a", origins[0]), out(REVIEW, "a", origins[0]),
                                    out(EXTRACTED, "b", origins[1]), out(DEADLETTER, "c", origins[2])])
        assert set(producers) == {transactional_id("socratext", IN, 0), transactional_id("socratext", IN, 1)}
        return log

    log = asyncio.run(go())
    by_id = {t["id"]: t for t in log}
    p0, p1 = by_id[f"socratext.{IN}.0"], by_id[f"socratext.{IN}.1"]
    assert p0["end"] == p1["end"] == "committed"
    assert p0["sent"] == [(NAMES[EXTRACTED], "a"), (NAMES[REVIEW], "a"), (NAMES[DEADLETTER], "c")]
    assert p0["offsets"] == ({(IN, 0): 12}, "socratext")  # the next offset to read: last + 1
    assert p1["sent"] == [(NAMES[EXTRACTED], "b")] and p1["offsets"] == ({(IN, 1): 5}, "socratext")


def test_an_input_without_outputs_still_commits_its_offset() -> None:
    async def go() -> list[dict[str, Any]]:
        log: list[dict[str, Any]] = []
        txn, _ = make(log)
        o = [origin(2, 7)]
        txn.begin(o)
        await txn.deliver(o, [])  # e.g. a duplicate inside the batch, skipped
        return log

    (t,) = asyncio.run(go())
    assert t["sent"] == [] and t["offsets"][0] == {(IN, 2): 8} and t["end"] == "committed"


def test_a_later_batch_of_a_partition_commits_after_the_earlier_one() -> None:
    """Two agent instances: the batch consumed second finishes first but must not commit offset 13
    while 10-11 are in flight (a kill in between would lose them)."""

    async def go() -> list[dict[str, Any]]:
        log: list[dict[str, Any]] = []
        txn, _ = make(log)
        first, second = [origin(0, 10), origin(0, 11)], [origin(0, 12)]
        txn.begin(first)
        txn.begin(second)
        late = asyncio.create_task(txn.deliver(second, [out(EXTRACTED, "s", second[0])]))
        await asyncio.sleep(0.05)
        assert log == [], "the second batch committed before the first"
        await txn.deliver(first, [out(EXTRACTED, "f", first[0])])
        await late
        return log

    log = asyncio.run(go())
    assert [(t["offsets"][0], t["sent"]) for t in log] == [
        ({(IN, 0): 13}, [(NAMES[EXTRACTED], "f"), (NAMES[EXTRACTED], "s")])]  # the run 10-12, once


def test_interleaved_batches_never_commit_past_an_event_in_flight_nor_wait_for_each_other() -> None:
    """Agent instances share one queue, so their batches interleave inside a partition (seen in CI:
    a batch holding offsets 20 and 24 committed 25 while 22 was in flight in the other; 22 was then
    skipped as 'read again', and lost). Each output is committed once, with the offset past its run;
    batches that wait on each other's events (20, 24 against 22, 26) both complete."""

    async def go() -> list[dict[str, Any]]:
        log: list[dict[str, Any]] = []
        txn, _ = make(log)
        a, b = [origin(0, 20), origin(0, 24)], [origin(0, 22), origin(0, 26)]
        txn.begin([a[0], b[0], a[1], b[1]])
        first = asyncio.create_task(txn.deliver(a, [out(EXTRACTED, f"a{o.offset}", o) for o in a]))
        await asyncio.sleep(0.05)
        assert [t["offsets"][0] for t in log] == [{(IN, 0): 21}], "only the run 20 may commit"
        assert not first.done()
        await asyncio.wait_for(txn.deliver(b, [out(EXTRACTED, f"b{o.offset}", o) for o in b]), 1)
        await asyncio.wait_for(first, 1)
        return log

    log = asyncio.run(go())
    assert [(t["offsets"][0], [k for _, k in t["sent"]], t["end"]) for t in log] == [
        ({(IN, 0): 21}, ["a20"], "committed"), ({(IN, 0): 27}, ["b22", "a24", "b26"], "committed")]


def test_a_dropped_batch_releases_the_batches_waiting_behind_it() -> None:
    """The partition is revoked while a later batch waits for an earlier one: both are dropped (their
    new owner redoes them), neither waits for ever."""

    async def go() -> list[dict[str, Any]]:
        log: list[dict[str, Any]] = []
        txn, _ = make(log)
        await txn.on_assigned([(IN, 0)])
        early, later = [origin(0, 1)], [origin(0, 2)]
        txn.begin(early + later)
        waiting = asyncio.create_task(txn.deliver(later, [out(EXTRACTED, "l", later[0])]))
        await asyncio.sleep(0.05)
        await txn.on_revoked([(IN, 0)])
        await asyncio.wait_for(txn.deliver(early, [out(EXTRACTED, "e", early[0])]), 1)
        await asyncio.wait_for(waiting, 1)
        return log

    assert asyncio.run(go()) == []


def test_a_batch_fetched_before_a_rebalance_is_dropped_not_committed() -> None:
    """Faust re-reads every partition from its committed offset after a rebalance: committing the old
    batch too would publish its receipts twice."""
    metrics = StreamMetrics()

    async def go() -> list[dict[str, Any]]:
        log: list[dict[str, Any]] = []
        txn, _ = make(log, generation=5, metrics=metrics)
        stale = [origin(0, 3, generation=4)]
        txn.begin(stale)
        await txn.deliver(stale, [out(EXTRACTED, "x", stale[0])])  # no exception: the agent goes on
        fresh = [origin(0, 3, generation=5)]
        txn.begin(fresh)
        await txn.deliver(fresh, [out(EXTRACTED, "x", fresh[0])])
        return log

    log = asyncio.run(go())
    assert [(t["sent"], t["end"]) for t in log] == [([(NAMES[EXTRACTED], "x")], "committed")]
    fenced = {"topic": IN, "outcome": "fenced"}
    assert metrics.registry.get_sample_value("socratext_transactions_total", fenced) == 1


def test_a_revoked_partition_is_left_to_its_new_owner() -> None:
    async def go() -> tuple[list[dict[str, Any]], dict[str, FakeProducer]]:
        log: list[dict[str, Any]] = []
        txn, producers = make(log)
        await txn.on_assigned([(IN, 0), (IN, 1), ("other.topic", 0)])
        assert {p.started for p in producers.values()} == {True} and len(producers) == 2  # started at once
        o = [origin(1, 0)]
        txn.begin(o)
        await txn.on_revoked([(IN, 1)])
        await txn.deliver(o, [out(EXTRACTED, "r", o[0])])
        return log, producers

    log, producers = asyncio.run(go())
    assert log == []
    assert producers[f"socratext.{IN}.1"].stopped


def test_a_fenced_producer_aborts_and_drops_the_batch_without_stopping_the_worker() -> None:
    fatal: list[BaseException] = []

    async def go() -> list[dict[str, Any]]:
        log: list[dict[str, Any]] = []
        txn, _ = make(log, fatal=fatal, fail_on="fenced")
        o = [origin(0, 1)]
        txn.begin(o)
        await txn.deliver(o, [out(EXTRACTED, "z", o[0])])
        assert txn.failed is None
        return log

    log = asyncio.run(go())
    assert [t["end"] for t in log] == ["aborted"] and fatal == []


def test_a_fenced_zombie_never_takes_the_partition_back_until_the_group_gives_it_again() -> None:
    """A woken zombie's first commit is fenced; its next batch of the same partition (fetched before the
    freeze, same generation) must not start a fresh producer: that producer would take the transactional
    id back from the rightful owner and publish the batch a second time (seen in CI as a duplicate)."""
    fatal: list[BaseException] = []

    async def go() -> tuple[list[dict[str, Any]], dict[str, FakeProducer]]:
        log: list[dict[str, Any]] = []
        txn, producers = make(log, fatal=fatal, fail_on="fenced")
        first, second = [origin(0, 1)], [origin(0, 2)]
        txn.begin(first + second)
        await txn.deliver(first, [out(EXTRACTED, "a", first[0])])
        made = len(producers)
        producers.clear()

        def healthy(txn_id: str) -> FakeProducer:  # a new producer would succeed: it must not be made
            producers[txn_id] = FakeProducer(txn_id, log)
            return producers[txn_id]

        txn._make = healthy  # noqa: SLF001
        await txn.deliver(second, [out(EXTRACTED, "b", second[0])])
        assert producers == {} and made == 1
        await txn.on_assigned([(IN, 0)])  # the group gives the partition back: commits resume
        again = [origin(0, 2)]
        txn.begin(again)
        await txn.deliver(again, [out(EXTRACTED, "b", again[0])])
        return log, producers

    log, producers = asyncio.run(go())
    assert [(t["sent"], t["end"]) for t in log] == [([], "aborted"), ([(NAMES[EXTRACTED], "b")], "committed")]
    assert fatal == []


def test_a_fence_without_a_rebalance_stops_the_worker_after_the_grace() -> None:
    """Fenced (e.g. the broker timed the transaction out) yet still assigned: without a new assignment
    the partition's events would be dropped for good, so the worker stops and resumes from the
    committed offsets."""
    fatal: list[BaseException] = []

    async def go() -> None:
        txn, _ = make([], fatal=fatal, fail_on="fenced")
        txn.lost_grace_s = 0.05
        o = [origin(0, 1)]
        txn.begin(o)
        await txn.deliver(o, [out(EXTRACTED, "z", o[0])])
        assert fatal == []
        await asyncio.sleep(0.2)

    asyncio.run(go())
    assert len(fatal) == 1 and "not reassigned" in str(fatal[0])


def test_a_failed_commit_stops_the_worker_and_nothing_commits_after_it() -> None:
    fatal: list[BaseException] = []

    async def go() -> list[dict[str, Any]]:
        log: list[dict[str, Any]] = []
        txn, producers = make(log, fatal=fatal, fail_on="commit")
        first, later = [origin(0, 1)], [origin(0, 2)]
        txn.begin(first)
        txn.begin(later)
        with pytest.raises(RuntimeError, match="commit failed"):
            await txn.deliver(first, [out(EXTRACTED, "a", first[0])])
        for p in producers.values():
            p.fail_on = None  # even a healthy producer now: nothing may commit past the failed batch
        with pytest.raises(RuntimeError, match="delivery stopped"):
            await txn.deliver(later, [out(EXTRACTED, "b", later[0])])
        return log

    log = asyncio.run(go())
    assert [t["end"] for t in log] == ["aborted"]
    assert len(fatal) == 1 and "commit failed" in str(fatal[0])


def test_a_batch_cancelled_at_shutdown_blocks_later_commits_without_calling_fatal() -> None:
    fatal: list[BaseException] = []

    async def go() -> list[dict[str, Any]]:
        log: list[dict[str, Any]] = []
        txn, _ = make(log, fatal=fatal)
        first, later = [origin(0, 1)], [origin(0, 2)]
        txn.begin(first)
        txn.begin(later)
        txn.abandon(first, asyncio.CancelledError())
        with pytest.raises(RuntimeError):
            await txn.deliver(later, [out(EXTRACTED, "b", later[0])])
        return log

    assert asyncio.run(go()) == [] and fatal == []


def test_an_output_over_the_request_size_becomes_a_dead_letter_in_the_same_transaction() -> None:
    async def go() -> list[dict[str, Any]]:
        log: list[dict[str, Any]] = []
        txn, _ = make(log, too_large={"big"})
        o = [origin(0, 0), origin(0, 1)]
        txn.begin(o)
        await txn.deliver(o, [out(OCR, "big", o[0]), out(OCR, "ok", o[1])])
        return log

    (t,) = asyncio.run(go())
    assert t["sent"] == [(NAMES[DEADLETTER], "big"), (NAMES[OCR], "ok")] and t["end"] == "committed"


def test_events_read_again_below_the_stable_committed_offset_are_not_published_twice() -> None:
    """After a rebalance Faust may re-read a batch whose transaction committed a moment before (its
    offset fetch does not wait for the pending offset commit): the stable offset read at assignment
    says which events were already published."""

    async def go() -> list[dict[str, Any]]:
        log: list[dict[str, Any]] = []
        txn, _ = make(log)
        txn.stable_offsets = lambda tps: dict.fromkeys(tps, 12)
        await txn.on_assigned([(IN, 0)])
        again = [origin(0, 10), origin(0, 11)]
        txn.begin(again)
        await txn.deliver(again, [out(EXTRACTED, "a", again[0]), out(EXTRACTED, "b", again[1])])
        overlap = [origin(0, 11), origin(0, 12)]
        txn.begin(overlap)
        await txn.deliver(overlap, [out(EXTRACTED, "b", overlap[0]), out(EXTRACTED, "c", overlap[1])])
        return log

    (t,) = asyncio.run(go())
    assert t["sent"] == [(NAMES[EXTRACTED], "c")] and t["offsets"][0] == {(IN, 0): 13}


def test_an_event_waiting_in_another_instances_batch_buffer_holds_the_commit_back() -> None:
    """Seen in CI: one instance's batch (offset 6) committed 7 while offset 5 sat in the other
    instance's take() buffer, not yet a batch; 5 was then skipped as read again, and lost. The events
    are registered as the instance takes them off the shared queue (a Faust stream processor)."""
    from types import SimpleNamespace

    from streams.agents import track_consumption

    class FakeStream:
        def __init__(self) -> None:
            self.processors: list[Any] = []
            self.current_event: Any = None

        def add_processor(self, fn: Any) -> None:
            self.processors.append(fn)

        def take(self, o: Origin) -> None:  # what Faust does as an event leaves the queue
            msg = SimpleNamespace(topic=o.topic, partition=o.partition, offset=o.offset,
                                  generation_id=o.generation)
            self.current_event = SimpleNamespace(message=msg)
            for fn in self.processors:
                fn(self.current_event)

    async def go() -> list[dict[str, Any]]:
        log: list[dict[str, Any]] = []
        txn, _ = make(log)
        buffering, batching = FakeStream(), FakeStream()
        track_consumption(buffering, txn)
        track_consumption(batching, txn)
        buffering.take(origin(0, 5))  # still in the first instance's buffer
        batching.take(origin(0, 6))
        later = [origin(0, 6)]
        txn.begin(later)
        done = asyncio.create_task(txn.deliver(later, [out(EXTRACTED, "six", later[0])]))
        await asyncio.sleep(0.05)
        assert log == [], "committed past an event in another instance's buffer"
        early = [origin(0, 5)]
        txn.begin(early)
        await txn.deliver(early, [out(EXTRACTED, "five", early[0])])
        await asyncio.wait_for(done, 1)
        return log

    log = asyncio.run(go())
    assert [(t["offsets"][0], [k for _, k in t["sent"]]) for t in log] == [({(IN, 0): 7}, ["five", "six"])]
