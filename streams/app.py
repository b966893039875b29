"""The Faust app of the streaming service and the runtime its agents share.

`faust -A streams.app worker` works (stage from `SOCRATEXT_WORKER_STAGE`, default "all"), but the usual
entry point is `python -m streams.worker --stage ocr|extract|all` / `socratext worker`, which also
serves the metrics and configures JSON logging.

Delivery is exactly once by default: each batch's outputs and its input offsets go into one Kafka
transaction per input partition (`streams.delivery`), read by `read_committed` consumers. Faust's own
`processing_guarantee="exactly_once"` does not do this for our pipeline: faust-streaming 0.15.3 puts a
send in a transaction only when the destination topic is consumed by the same app and co-partitioned
with the input, so `receipts.extracted`, `.review` and `.deadletter` were written outside any
transaction (faust-streaming issues #177, #517). `SOCRATEXT_DELIVERY=at_least_once` keeps Faust's
commits (outputs acknowledged first, offsets after; consumers deduplicate by receipt id).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import faust

from socratext.settings import Settings, get_settings
from streams import STAGES
from streams.delivery import (
    AtLeastOnce,
    Delivery,
    Transactions,
    stable_committed_offsets,
    use_transactional_input,
)
from streams.metrics import StreamMetrics
from streams.topics import OCR, TOPICS, UPLOADED, declare, topic_names

APP_ID = "socratext"
T = TypeVar("T")


def worker_threads(settings: Settings) -> int:
    """Thread-pool size for the blocking work (decode, OCR, model): one per core up to 4 by default."""
    return int(settings.worker_threads) or min(4, os.cpu_count() or 1)


class Runtime:
    """What the agents of one process share: settings, metrics, the thread pool and lazily built deps."""

    def __init__(self, settings: Settings, metrics: StreamMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or StreamMetrics()
        self.executor = ThreadPoolExecutor(max_workers=worker_threads(settings),
                                           thread_name_prefix="socratext-work")
        self.ready: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._cache: dict[str, Any] = {}

    def once(self, name: str, build: Callable[[], T]) -> Callable[[], T]:
        """A factory that builds `name` on first call only (agents with concurrency > 1 share it)."""

        def get() -> T:
            with self._lock:
                if name not in self._cache:
                    self._cache[name] = build()
                    self.ready[name] = True
            return self._cache[name]

        return get

    def health(self) -> dict[str, object]:
        wanted = list(self.ready)
        ok = bool(wanted) and all(self.ready.values())
        return {"status": "ok" if ok else "starting", "stages": dict(self.ready)}


def create_app(settings: Settings | None = None, stage: str = "all", runtime: Runtime | None = None,
               ) -> faust.App:
    """A Faust app with the agents of `stage` ("ocr", "extract" or "all" — both in one process)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")
    settings = settings or get_settings()
    runtime = runtime or Runtime(settings)
    from socratext.kafka_config import faust_broker, faust_credentials
    from socratext.topics import topic_partitions

    partitions = topic_partitions(settings)
    app = faust.App(
        APP_ID,  # the consumer group: stable, so a restarted worker resumes from its committed offsets
        broker=faust_broker(settings),
        broker_credentials=faust_credentials(settings),  # TLS / SASL from settings (kafka_config)
        store="memory://",
        autodiscover=False,
        web_enabled=False,  # we serve /metrics and /healthz ourselves (streams.metrics)
        topic_partitions=max(partitions.values()),
        topic_disable_leader=True,  # no tables, no leader election topic needed
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",  # Faust's exactly_once does not cover our sinks: docstring
        broker_commit_every=int(settings.commit_every),  # exactly_once: bookkeeping only, nothing sent
        broker_commit_interval=float(settings.commit_interval_s),
        # On SIGTERM and before a rebalance takes partitions away, the batches in flight finish and commit
        # (tests/test_faults.py): a clean stop or a scale-out redoes no work.
        stream_wait_empty=True,
        # A worker killed without leaving the group (kill -9, OOM, node loss) holds its partitions until
        # its session expires: 10 s instead of Faust's 60 s gets a replacement going quickly. Heartbeats
        # come from the event loop, which the thread pool keeps free, so long batches do not expire it.
        broker_session_timeout=float(settings.kafka_session_timeout_s),
        broker_heartbeat_interval=float(settings.kafka_session_timeout_s) / 4,
    )
    topics = declare(app, settings)  # created with their declared partition counts if absent
    app.socratext_runtime = runtime  # type: ignore[attr-defined]
    if settings.delivery == "exactly_once":
        use_transactional_input(app)  # one consumer serves both stages: read_committed, no Faust commits
    if stage in ("ocr", "all"):
        from streams.agents import ocr

        runtime.ready["ocr"] = False
        ocr.register(app, topics, runtime.once("ocr", lambda: ocr.build_ocr_deps(settings, runtime.metrics)),
                     runtime.executor, concurrency=settings.ocr_concurrency or (os.cpu_count() or 1),
                     delivery=delivery_for(app, settings, runtime, topics, UPLOADED))
    if stage in ("extract", "all"):
        from streams.agents import extract

        runtime.ready["extract"] = False
        build = runtime.once("extract", lambda: extract.build_extract_deps(settings, runtime.metrics))
        extract.register(app, topics, build, runtime.executor, settings.batch_size, settings.batch_window_s,
                         concurrency=max(1, int(settings.extract_concurrency)),
                         delivery=delivery_for(app, settings, runtime, topics, OCR))
    return app


def delivery_for(app: faust.App, settings: Settings, runtime: Runtime, topics: dict[str, Any],
                 input_logical: str) -> Delivery:
    """The delivery of the stage that consumes `input_logical` (`settings.delivery`, streams.delivery):
    for exactly once, its transactional producers follow the consumer group's assignment."""
    if settings.delivery == "at_least_once":
        return AtLeastOnce(topics)
    txn = Transactions(settings, app_id=APP_ID, group_id=app.conf.id,
                       input_topic=TOPICS[input_logical].name(settings), topic_names=topic_names(settings),
                       metrics=runtime.metrics, max_request_size=app.conf.producer_max_request_size,
                       generation=lambda: app.consumer_generation_id,
                       stable_offsets=lambda tps: stable_committed_offsets(settings, app.conf.id, tps))

    async def on_assigned(sender: Any, assigned: Any, **_: Any) -> None:
        await txn.on_assigned((tp.topic, tp.partition) for tp in assigned)

    async def on_revoked(sender: Any, revoked: Any, **_: Any) -> None:
        await txn.on_revoked((tp.topic, tp.partition) for tp in revoked)

    async def on_shutdown(sender: Any, **_: Any) -> None:  # after the consumer (and agents) stopped
        await txn.close()

    app.on_partitions_assigned.connect(on_assigned, weak=False)
    app.on_partitions_revoked.connect(on_revoked, weak=False)
    app.on_before_shutdown.connect(on_shutdown, weak=False)
    return txn


def __getattr__(name: str) -> Any:
    """`streams.app.app`, the app `faust -A streams.app worker` looks for, built on first access only
    (importing this module must not create an app, a thread pool and agents nobody runs)."""
    if name == "app":
        global app
        app = create_app(stage=os.environ.get("SOCRATEXT_WORKER_STAGE", "all"))
        return app
    raise AttributeError(name)
