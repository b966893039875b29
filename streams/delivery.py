"""How a stage's results reach Kafka and when its input counts as done (`settings.delivery`).

**exactly_once** (the default). A batch's outputs (`receipts.ocr`, `.extracted`, `.review`,
`.deadletter`) and the offset of the input they answer are written in **one Kafka transaction**
(`send_offsets_to_transaction`): a `read_committed` consumer sees the outputs if and only if the input
counts as consumed. A worker killed anywhere (before its sends, between them, after them before the
commit) leaves at most an open transaction, which is aborted as soon as the next owner of the input
partition starts its producer, and that owner redoes the batch from the last committed offset.

One transactional producer per *input partition* (transactional id `<app>.<input topic>.<partition>`),
because aiokafka 0.14 has no consumer-group fencing (KIP-447): a worker that lost a partition in a
rebalance but still runs (a zombie) is fenced by the new owner's producer taking the same id, and its
late transaction fails instead of duplicating the new owner's work.

Faust's consumer is adjusted for this mode (`use_transactional_input`): it reads `read_committed` (the
extraction stage must not see the OCR stage's aborted transactions) and sends no offset commit of its
own (on its timer it would commit acknowledged offsets behind or ahead of the transactions' commits,
and a rewound offset replays work that a transaction already committed).

Within one partition the committed offset never passes an event still in flight: agent instances
(`extract_concurrency` > 1) take events from one queue, so their batches interleave, and a batch's
events are committed only with the run of processed events at the head of the partition (`deliver`).

**at_least_once**: the outputs are sent and their acknowledgements awaited, then Faust commits the
input offsets on its timer (`streams.agents.publish`): a crash in between replays the input and
re-publishes its outputs (consumers deduplicate by the key, the receipt id).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Iterable
from typing import Any

from socratext.settings import Settings
from streams.agents import dead, publish
from streams.events import Origin, OutEvent
from streams.metrics import StreamMetrics
from streams.topics import DEADLETTER, OCR

log = logging.getLogger("streams.delivery")

TP = tuple[str, int]
Batch = dict[tuple[TP, int | None], tuple[list[int], list[OutEvent]]]
"""(input partition, group generation) → (its offsets in the batch, their outputs)"""

FENCED_ERRORS = ("ProducerFenced", "InvalidProducerEpoch", "UnknownProducerId")
"""aiokafka errors meaning another producer took this partition's transactional id: its new owner."""


def transactional_id(app_id: str, topic: str, partition: int) -> str:
    """Stable per input partition, so the partition's next owner fences (and aborts for) the last one."""
    return f"{app_id}.{topic}.{partition}"


def make_aiokafka_producer(settings: Settings, txn_id: str, max_request_size: int) -> Any:
    """A transactional, idempotent aiokafka producer with the settings' TLS/SASL (kafka_config)."""
    from aiokafka import AIOKafkaProducer

    from socratext.kafka_config import aiokafka_kwargs

    return AIOKafkaProducer(**aiokafka_kwargs(
        settings, transactional_id=txn_id, enable_idempotence=True, acks="all",
        max_request_size=max_request_size, client_id=txn_id,
        transaction_timeout_ms=int(settings.kafka_transaction_timeout_s * 1000)))


def use_transactional_input(app: Any) -> None:
    """Make the Faust app's consumer fit exactly-once delivery: read its input `read_committed` (the
    OCR stage's aborted transactions must never reach the extraction stage) and send no offset
    commit of its own (the transactions commit the offsets; Faust's timer would commit acknowledged
    offsets behind or ahead of them). Faust offers neither outside its own exactly_once mode, which
    does not cover our outputs (streams.app), hence this subclass of its aiokafka consumer."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
    from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer

    class ReadCommittedThread(AIOKafkaConsumerThread):  # type: ignore[misc]
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._isolation_level = "read_committed"  # noqa: SLF001 - aiokafka reads it at start()
            return consumer

    class TransactionalInputConsumer(AIOKafkaConsumer):  # type: ignore[misc]
        def _new_consumer_thread(self) -> Any:
            return ReadCommittedThread(self, loop=self.loop, beacon=self.beacon)

        async def _commit(self, offsets: Any) -> bool:
            return True  # Faust keeps its bookkeeping (acks, gaps); the transactions commit the offsets

    app.transport.Consumer = TransactionalInputConsumer


def stable_committed_offsets(settings: Settings, group_id: str, tps: list[TP],
                             timeout_s: float = 15.0) -> dict[TP, int]:
    """The group's committed offsets of `tps`, fetched with `require_stable` (a kafka-python consumer of
    the group reading `read_committed`, which never subscribes): while a transaction's offset commit on
    them is pending the broker answers UNSTABLE_OFFSET_COMMIT and the client retries."""
    from kafka import KafkaConsumer, TopicPartition

    from socratext.kafka_config import kafka_python_kwargs

    consumer = KafkaConsumer(**kafka_python_kwargs(settings, group_id=group_id, enable_auto_commit=False,
                                                   isolation_level="read_committed"))
    try:
        return {(topic, partition): consumer.committed(TopicPartition(topic, partition),
                                                       timeout_ms=int(timeout_s * 1000)) or 0
                for topic, partition in tps}
    finally:
        consumer.close()


def _stop_this_worker(exc: BaseException) -> None:
    """SIGTERM to this process: Faust stops the agents and the worker exits; its supervisor
    (Kubernetes, `socratext stack`) starts it again."""
    os.kill(os.getpid(), signal.SIGTERM)


class AtLeastOnce:
    """Publish and await the acknowledgements; Faust commits the input offsets afterwards."""

    def __init__(self, topics: dict[str, Any]) -> None:
        self.topics = topics  # logical name → Faust topic

    def begin(self, origins: Iterable[Origin]) -> None:
        """Nothing to order: Faust commits an offset only once every event below it is acknowledged."""

    def abandon(self, origins: Iterable[Origin], exc: BaseException) -> None:
        """Nothing to undo: unacknowledged events are not committed."""

    async def deliver(self, origins: list[Origin], outs: list[OutEvent]) -> None:
        await publish(outs, self.topics)


class Fenced(Exception):
    """The batch must not be committed by this worker: it was fetched before a rebalance (Faust reads
    the partition again from its committed offset) or the partition now belongs to another worker
    (whose producer fenced ours). Its transaction is aborted; nothing of it is visible."""


class Transactions:
    """The transactional producers of one stage's input topic and the order of their commits.

    Agents call `begin(origins)` as soon as they hold a batch (before any `await`, so the order of
    registration is the order of consumption) and `deliver(origins, outs)` once the batch is processed.
    """

    def __init__(self, settings: Settings, *, app_id: str, group_id: str, input_topic: str,
                 topic_names: dict[str, str], metrics: StreamMetrics | None = None,
                 max_request_size: int = 1_000_000, generation: Callable[[], int | None] = lambda: None,
                 make_producer: Callable[[str], Any] | None = None,
                 on_fatal: Callable[[BaseException], None] | None = None,
                 stable_offsets: Callable[[list[TP]], dict[TP, int]] | None = None) -> None:
        self.settings = settings
        self.app_id = app_id
        self.group_id = group_id
        self.input_topic = input_topic
        self.topic_names = topic_names  # logical → Kafka topic name
        self.metrics = metrics
        self.max_request_size = max_request_size
        self.generation = generation  # the consumer group's current generation (Faust's)
        self._make = make_producer or (lambda tid: make_aiokafka_producer(settings, tid, max_request_size))
        self._producers: dict[TP, Any] = {}
        self._locks: dict[TP, asyncio.Lock] = {}
        self._in_flight: dict[TP, dict[tuple[int | None, int], asyncio.Future[None]]] = {}
        self._ready: dict[TP, dict[tuple[int | None, int], list[OutEvent]]] = {}  # processed, not committed
        self._committed: dict[TP, int] = {}  # next offset to read, as last committed by a transaction
        self.assigned: set[TP] | None = None  # None: not told yet (tests, or before the first assignment)
        self.on_fatal = on_fatal or _stop_this_worker
        self.stable_offsets = stable_offsets
        self.failed: BaseException | None = None  # once set, nothing more is committed by this process
        self._lost: set[TP] = set()  # fenced by another producer: nothing more of them until reassigned
        self.lost_grace_s = 3.0 * float(settings.kafka_session_timeout_s)
        self._fault_paused = False

    # ------------------------------------------------------------------------------ partition ownership

    async def on_assigned(self, tps: Iterable[TP]) -> None:
        """Take over the assigned input partitions, in this order:

        1. Start their producers: starting one aborts a transaction its previous owner left open (a
           killed or frozen worker), which would otherwise hold back every `read_committed` consumer of
           the output partitions it wrote to, and keep the partition's committed offset pending.
        2. Read their committed offsets once stable (`stable_offsets`, `require_stable`). A transaction
           committed just before the rebalance (the revoke lets the batches in flight commit) has its
           offsets written by the broker a moment later; Faust's own offset fetch in between (aiokafka
           has no `require_stable`, KIP-447) returns the older offset and the batch is read again.
           `deliver` skips the events below the stable offset: they were published already."""
        mine = {tp for tp in tps if tp[0] == self.input_topic}
        self.assigned = (self.assigned or set()) | mine
        self._lost -= mine  # given to this worker again by the group: its producer may take the id back
        for tp in mine:
            self._committed.pop(tp, None)  # the group's committed offset is the truth again
        for tp in sorted(mine):
            try:
                async with self._lock(tp):
                    await self._producer(tp)
            except Exception:  # noqa: BLE001 - the first batch of the partition tries again
                log.warning("could not start the transactional producer of %s:%d yet", *tp, exc_info=True)
        if mine and self.stable_offsets is not None:
            try:
                stable = await asyncio.get_running_loop().run_in_executor(None, self.stable_offsets,
                                                                          sorted(mine))
                self._committed.update(stable)
            except Exception:  # noqa: BLE001 - never block the group: the batches then commit as read
                log.warning("could not read the stable committed offsets of %s", sorted(mine), exc_info=True)

    async def on_revoked(self, tps: Iterable[TP]) -> None:
        """Stop the producers of the partitions taken away (after any commit in progress)."""
        mine = {tp for tp in tps if tp[0] == self.input_topic}
        if self.assigned is not None:
            self.assigned -= mine
        self._lost -= mine  # the group knows: the stale batches are dropped as revoked now
        for tp in sorted(mine):
            for generation in {gen for gen, _ in self._ready.get(tp, {})}:  # release batches waiting there
                self._drop_waiting(tp, generation, [], Fenced("the partition was revoked"))
            async with self._lock(tp):
                await self._drop(tp)

    async def close(self) -> None:
        for tp in list(self._producers):
            await self._drop(tp)

    # --------------------------------------------------------------------------------------- delivery

    def begin(self, origins: Iterable[Origin]) -> None:
        """Register input events as in flight (synchronously, as they are taken off the queue:
        `streams.agents.track_consumption`; again, harmlessly, when their batch starts)."""
        for o in origins:
            if o.topic is not None and o.partition is not None and o.offset is not None:
                self._future((o.topic, o.partition), o.generation, o.offset)  # once: it may come twice

    def abandon(self, origins: Iterable[Origin], exc: BaseException) -> None:
        """A batch that will not be delivered (its processing failed, or was cancelled at shutdown):
        no later batch of this process may commit past it (`_fail`)."""
        groups = self._group(list(origins), [])
        self._fail(exc)
        for (tp, generation), (offsets, _) in groups.items():
            self._drop_waiting(tp, generation, offsets, exc)

    def _fail(self, exc: BaseException) -> None:
        """Stop committing for good and stop the worker: an offset committed after a batch that was
        not would lose that batch. The restarted worker resumes from the committed offsets."""
        if self.failed is not None:
            return
        self.failed = exc
        if not isinstance(exc, asyncio.CancelledError):  # cancelled: the worker is stopping already
            log.error("exactly-once delivery failed; stopping the worker so that it resumes from the "
                      "committed offsets: %r", exc, extra={"topic": self.input_topic})
            self.on_fatal(exc)

    async def deliver(self, origins: list[Origin], outs: list[OutEvent]) -> None:
        """Commit the batch: per input partition, its outputs and the offset past them in one transaction.

        Agent instances (`extract_concurrency` > 1) take events from one shared queue, so their batches
        interleave inside a partition (one holds offsets 20 and 24, the other 22). A batch therefore
        marks its events *ready*, and the longest run of ready events at the head of the partition's
        in-flight events is committed, by whichever batch completes that run: the committed offset
        never passes an event still in flight, and every output is committed once, with the offset
        past its input.

        Events fetched before a rebalance (an older group generation), or of a partition this worker
        no longer owns, are dropped (Faust re-reads them from the committed offset, or their new
        owner does). Any other failure aborts the transaction and propagates: the worker must stop
        rather than let a later batch commit an offset past this one."""
        groups = self._group(origins, outs)
        for (tp, generation), (offsets, tp_outs) in sorted(groups.items(), key=lambda kv: kv[0][0]):
            waits = [self._future(tp, generation, off) for off in offsets]
            try:
                if self.failed is not None:
                    raise RuntimeError("delivery stopped after a failed batch") from self.failed
                self._check_owned(tp, generation)
                by_offset: dict[int, list[OutEvent]] = {off: [] for off in offsets}
                for out in tp_outs:
                    off = out.origin.offset if out.origin is not None else None
                    by_offset[off if off in by_offset else max(offsets)].append(out)
                ready = self._ready.setdefault(tp, {})
                for off, off_outs in by_offset.items():
                    ready[(generation, off)] = off_outs
                async with self._lock(tp):
                    await self._commit_ready(tp, generation)
                await asyncio.gather(*waits)  # committed by this batch, or by the one completing the run
            except Fenced as exc:
                self._drop_waiting(tp, generation, offsets, exc)
                self._count("fenced")
                log.warning("%d event(s) of %s:%d dropped, to be read again from its committed offset: %s",
                            len(offsets), *tp, exc)
            except BaseException as exc:
                self._drop_waiting(tp, generation, offsets, exc)
                self._count("aborted")
                self._fail(exc)
                raise
            else:
                self._count("committed")

    async def _commit_ready(self, tp: TP, generation: int | None) -> None:
        """Commit the run of ready events at the head of `tp`'s in-flight events (under `tp`'s lock)."""
        ready = self._ready.get(tp, {})
        run: list[int] = []
        for off in sorted(off for gen, off in self._in_flight.get(tp, {}) if gen == generation):
            if (generation, off) not in ready:
                break
            run.append(off)
        if not run:
            return  # an earlier event is still being processed: its batch commits this one's too
        if self.failed is not None:
            raise RuntimeError("delivery stopped after a failed batch") from self.failed
        self._check_owned(tp, generation)
        done = self._committed.get(tp, 0)  # events below it were published and committed
        again = [off for off in run if off < done]
        outs = [out for off in run for out in ready.pop((generation, off)) if off >= done]
        try:
            if max(run) >= done:
                await self._commit(tp, max(run) + 1, outs)
        except BaseException as exc:
            self._settle(tp, generation, run, exc)
            raise
        self._settle(tp, generation, run, None)
        if again:
            self._count("redelivered")
            log.info("%d event(s) of %s:%d read again below its committed offset %d: skipped",
                     len(again), *tp, done)

    def _future(self, tp: TP, generation: int | None, offset: int) -> asyncio.Future[None]:
        """The in-flight future of one event (`begin` registers it; made here if it did not)."""
        pending = self._in_flight.setdefault(tp, {})
        fut = pending.get((generation, offset))
        if fut is None:
            fut = pending[(generation, offset)] = asyncio.get_running_loop().create_future()
        return fut

    def _drop_waiting(self, tp: TP, generation: int | None, offsets: list[int], exc: BaseException) -> None:
        """A batch that will not be committed: its events, and the ready events of the partition waiting
        behind them (their batches would otherwise wait for ever), fail with `exc`."""
        ready = self._ready.get(tp, {})
        waiting = [off for gen, off in ready if gen == generation]
        for off in waiting:
            ready.pop((generation, off), None)
        self._settle(tp, generation, sorted(set(offsets) | set(waiting)), exc)

    def _check_owned(self, tp: TP, generation: int | None) -> None:
        if tp in self._lost:
            raise Fenced("this worker's producer of the partition was fenced by its new owner")
        if self.assigned is not None and tp not in self.assigned:
            raise Fenced("the partition was revoked")
        current = self.generation()
        if generation is not None and current is not None and generation != current:
            raise Fenced(f"fetched in group generation {generation}, now {current}")

    def _group(self, origins: list[Origin], outs: list[OutEvent]) -> Batch:
        groups: Batch = {}
        for o in origins:
            if o.topic is None or o.partition is None or o.offset is None:
                raise ValueError(f"an input event without its partition and offset: {o}")
            groups.setdefault(((o.topic, o.partition), o.generation), ([], []))[0].append(o.offset)
        for out in outs:
            o = out.origin
            if o is None or o.topic is None or o.partition is None:
                if len(groups) != 1:  # a bug: an output that does not say which input it answers
                    raise ValueError(f"output {out.topic}/{out.key} has no origin in a multi-partition batch")
                next(iter(groups.values()))[1].append(out)
            else:
                groups[((o.topic, o.partition), o.generation)][1].append(out)
        return groups

    def _settle(self, tp: TP, generation: int | None, offsets: list[int], exc: BaseException | None) -> None:
        pending = self._in_flight.get(tp, {})
        for off in offsets:
            fut = pending.pop((generation, off), None)
            if fut is not None and not fut.done():
                if exc is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(exc)
                    fut.exception()  # retrieved: a batch that nobody waits for must not warn at exit

    async def _commit(self, tp: TP, next_offset: int, outs: list[OutEvent]) -> None:
        from aiokafka.structs import TopicPartition

        producer = await self._producer(tp)
        # Never move the committed offset back: a batch consumed out of order (it should not happen)
        # must not rewind the partition under one already committed.
        offset = max(next_offset, self._committed.get(tp, 0))
        try:
            async with producer.transaction():
                await self._fault_pause("before_send", producer)
                for i, out in enumerate(outs):
                    await self._send(producer, out)
                    if i == 0 and len(outs) > 1:
                        await self._fault_pause("between_sends", producer)
                await producer.send_offsets_to_transaction({TopicPartition(*tp): offset}, self.group_id)
                await self._fault_pause("before_commit", producer)
        except Exception as exc:
            if type(exc).__name__ in FENCED_ERRORS:
                await self._drop(tp)
                self._lose(tp)
                raise Fenced(str(exc)) from exc
            await self._drop(tp)  # a producer in an unknown state is not reused
            raise
        self._committed[tp] = offset

    async def _send(self, producer: Any, out: OutEvent) -> None:
        """Queue one output in the open transaction. A value over the request size (checked by the
        client before anything is queued) becomes a dead letter for that receipt instead."""
        from aiokafka.errors import MessageSizeTooLargeError

        try:
            await producer.send(self.topic_names[out.topic], key=out.key_bytes(), value=out.value_bytes())
        except MessageSizeTooLargeError as exc:
            if out.topic == DEADLETTER:
                raise
            stage = "ocr" if out.topic == OCR else "extract"
            d = dead(out.value_bytes(), stage=stage, exc=exc, receipt_id=out.key, metrics=self.metrics)
            await producer.send(self.topic_names[DEADLETTER], key=d.key_bytes(), value=d.value_bytes())

    async def _fault_pause(self, point: str, producer: Any) -> None:
        """`settings.fault_pause_at` (fault tests only): stop here `fault_pause_s`, with what was sent so
        far flushed to the broker (written, not committed)."""
        if self.settings.fault_pause_at != point or self._fault_paused:
            return
        self._fault_paused = True
        await producer.flush()
        log.warning("fault pause at %s", point, extra={"topic": self.input_topic})
        await asyncio.sleep(self.settings.fault_pause_s)

    def _lose(self, tp: TP) -> None:
        """Another producer took `tp`'s transactional id: its new owner. This process must not start a
        producer for `tp` again until the group gives it back (`on_assigned`): a fresh producer would
        take the id back, fence the rightful owner, and commit this zombie's stale batches (duplicates,
        an offset behind the owner's). A zombie learns of the rebalance at its next heartbeat; if no
        assignment comes within `lost_grace_s` (a fence without a rebalance: a transaction the broker
        timed out), the worker stops and resumes from the committed offsets, rather than drop the
        partition's events for good."""
        self._lost.add(tp)

        def still_lost() -> None:
            if tp in self._lost and self.failed is None:
                self._fail(Fenced(f"{tp[0]}:{tp[1]} fenced and not reassigned "
                                  f"within {self.lost_grace_s:.0f} s"))

        asyncio.get_running_loop().call_later(self.lost_grace_s, still_lost)

    # ------------------------------------------------------------------------------------- producers

    def _lock(self, tp: TP) -> asyncio.Lock:
        return self._locks.setdefault(tp, asyncio.Lock())

    async def _producer(self, tp: TP) -> Any:
        producer = self._producers.get(tp)
        if producer is None:
            producer = self._make(transactional_id(self.app_id, *tp))
            await producer.start()  # InitProducerId: fences the previous owner, aborts its open transaction
            self._producers[tp] = producer
        return producer

    async def _drop(self, tp: TP) -> None:
        producer = self._producers.pop(tp, None)
        if producer is not None:
            try:
                await producer.stop()
            except Exception:  # noqa: BLE001 - closing a fenced or broken producer may complain
                log.debug("closing the producer of %s:%d failed", *tp, exc_info=True)

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.transactions.labels(topic=self.input_topic, outcome=outcome).inc()


Delivery = AtLeastOnce | Transactions
