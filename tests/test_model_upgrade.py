"""Live model upgrade: a worker following `registry:<name>` switches versions between batches, without a
restart, without losing or duplicating a receipt, and keeps serving when a new version does not load.

The unit tests drive `ModelWatcher` / `ExtractDeps.swap` / `watch_model` with a fake registry; the stack
test runs a real worker subprocess against the real registry (MinIO) and Kafka.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from socratext.document import WordLabel
from socratext.settings import Settings
from streams.agents.extract import (
    ExtractDeps,
    ModelWatcher,
    process_extract_batch,
    run_extract_batch,
    watch_model,
)
from streams.metrics import StreamMetrics

pytestmark = pytest.mark.filterwarnings("ignore:.*(read_text|open_text) is deprecated:DeprecationWarning")


class FakeExtractor:
    def __init__(self, name: str, version: str) -> None:
        self.name, self.version = name, version

    def label(self, pages, images=None):
        return [[WordLabel("O", 0.9) for _ in p.words] for p in pages]


class FakeRegistry:
    def __init__(self, current: str | None) -> None:
        self.cur = current
        self.down = False

    def current(self, name: str) -> str | None:
        if self.down:
            raise ConnectionError("store down")
        return self.cur

    def resolve(self, name: str, version: str | None = None) -> str:
        return version or self.cur  # type: ignore[return-value]


def _watcher(reg: FakeRegistry, broken: set[str] = frozenset(), clock=time.monotonic) -> ModelWatcher:
    loads: list[str] = []

    def load(version: str) -> FakeExtractor:
        loads.append(version)
        if version in broken:
            raise OSError(f"weights of {version} are corrupt")
        return FakeExtractor("m", version)

    w = ModelWatcher("m", Settings(model="registry:m", model_poll_s=0.05), registry=reg, load=load,
                     clock=clock)
    w.loads = loads  # type: ignore[attr-defined]
    return w


def _serving_v1() -> tuple[FakeRegistry, ModelWatcher, ExtractDeps]:
    """A registry whose current version is v1, its watcher, and extraction deps serving v1."""
    reg = FakeRegistry("v1")
    w = _watcher(reg)
    return reg, w, ExtractDeps(Settings(), w.load_current(), watcher=w)


def test_watcher_loads_a_new_current_and_swap_updates_the_metric() -> None:
    reg = FakeRegistry("v1")
    w = _watcher(reg)
    metrics = StreamMetrics()
    deps = ExtractDeps(Settings(), w.load_current(), metrics=metrics, watcher=w)
    metrics.set_model("m", "v1")
    assert w.version == "v1" and w.check() is None, "nothing new: nothing loaded"
    reg.cur = "v2"
    w.pending = w.check()
    assert deps.extractor.version == "v1", "loading does not swap"
    deps.in_flight = 1
    assert deps.busy and not deps.swap() and deps.extractor.version == "v1", "never inside a batch"
    deps.in_flight = 0
    assert deps.swap() and deps.extractor.version == "v2" and w.version == "v2" and w.pending is None
    reg_ = metrics.registry
    assert reg_.get_sample_value("socratext_model_info", {"name": "m", "version": "v2"}) == 1
    assert reg_.get_sample_value("socratext_model_info", {"name": "m", "version": "v1"}) is None, \
        "only the serving version"
    assert w.loads == ["v1", "v2"]  # type: ignore[attr-defined]


def test_swapped_out_model_is_freed_although_the_heap_was_frozen() -> None:
    """A worker freezes its heap once the model is loaded (`settle_heap`: full collections would walk the
    model's objects at every batch); a model let go at a swap is still freed, reference cycles and all,
    the new one is frozen in its place, and the last agent to stop hands the heap back."""
    import gc
    import weakref

    from streams.agents.extract import build_extract_deps, settle_heap

    gc.unfreeze()
    build_extract_deps(Settings(model="rules"), None)
    assert gc.get_freeze_count() > 0, "a worker's extractor, once loaded, is out of the collector's way"
    reg, w, deps = _serving_v1()
    deps.extractor.me = deps.extractor  # type: ignore[attr-defined]  # a cycle: only the collector frees it
    old = weakref.ref(deps.extractor)
    settle_heap()
    assert gc.get_freeze_count() > 0 and old() is not None
    reg.cur = "v2"
    w.pending = w.check()
    assert deps.swap() and deps.extractor.version == "v2"
    assert old() is None, "the old model was freed at the swap"
    assert gc.get_freeze_count() > 0 and gc.is_tracked(deps.extractor)
    with ThreadPoolExecutor(1) as pool:
        async def run() -> None:
            deps.agent_started(pool)
            deps.agent_stopped()

        asyncio.run(run())
    assert gc.get_freeze_count() == 0


def test_a_version_that_fails_to_load_keeps_the_old_model_and_is_not_retried_at_once() -> None:
    now = [0.0]
    reg = FakeRegistry("v1")
    w = _watcher(reg, broken={"v2"}, clock=lambda: now[0])
    deps = ExtractDeps(Settings(), w.load_current(), watcher=w)
    reg.cur = "v2"
    assert w.check() is None and "corrupt" in (w.last_error or "")
    now[0] += 1.0
    assert w.check() is None and w.loads.count("v2") == 1  # type: ignore[attr-defined]
    now[0] += w.retry_s
    assert w.check() is None and w.loads.count("v2") == 2  # type: ignore[attr-defined]
    reg.down = True
    assert w.check() is None
    assert not deps.swap() and deps.extractor.version == "v1"
    reg.down, reg.cur = False, "v1"  # rolled back: nothing to do
    assert w.check() is None


def test_events_name_the_model_of_their_batch(tmp_path: Path) -> None:
    from socratext.document import OcrPage, Word
    from streams.events import dumps, ocr_event, parse_upload

    up = parse_upload(dumps({"schema_version": 1, "receipt_id": "r-1", "bucket": "receipts",
                             "key": "k.jpg", "uploaded_at": "2026-11-26T00:00:00Z"}))[0]
    raw = dumps(ocr_event(up, OcrPage([Word("TOTAL", (0, 0, 10, 10))], 100, 100), 1, 1, {}))
    reg, w, deps = _serving_v1()
    (first,) = [o for o in process_extract_batch([raw], deps) if o.topic == "extracted"]
    reg.cur = "v2"
    w.pending = w.check()
    deps.swap()
    (second,) = [o for o in process_extract_batch([raw], deps) if o.topic == "extracted"]
    assert first.value["model"] == {"name": "m", "version": "v1"}
    assert second.value["model"] == {"name": "m", "version": "v2"}


def test_watch_model_polls_in_the_executor_and_swaps_when_idle() -> None:
    reg, w, deps = _serving_v1()

    async def scenario() -> None:
        with ThreadPoolExecutor(1) as pool:
            task = asyncio.ensure_future(watch_model(deps, pool))
            try:
                deps.in_flight = 1  # a batch is running: the new model waits
                reg.cur = "v2"
                for _ in range(100):
                    await asyncio.sleep(0.02)
                    if w.pending is not None:
                        break
                assert w.pending is not None and deps.extractor.version == "v1"
                deps.in_flight = 0
                for _ in range(100):
                    await asyncio.sleep(0.02)
                    if deps.extractor.version == "v2":
                        break
                assert deps.extractor.version == "v2"
            finally:
                task.cancel()

    asyncio.run(scenario())


def test_a_pending_model_waits_for_the_batches_in_flight_then_serves_the_next_one() -> None:
    """With two agents on one model (extract_concurrency 2), a steady load always has a batch running
    somewhere: the agent about to start a batch waits for the others to finish, then swaps, so the new
    model is served from the next batch on instead of never."""
    reg, w, deps = _serving_v1()

    async def scenario() -> None:
        await deps.before_batch()  # nothing pending: no wait, no swap
        assert deps.extractor.version == "v1"
        reg.cur = "v2"
        w.pending = w.check()
        deps.in_flight = 1  # the other agent's batch
        waiting = asyncio.ensure_future(deps.before_batch())
        await asyncio.sleep(0.05)
        assert not waiting.done() and deps.extractor.version == "v1", "not while a batch runs"
        deps.in_flight = 0  # it finished
        await asyncio.wait_for(waiting, 1.0)
        assert deps.extractor.version == "v2" and w.pending is None

    asyncio.run(scenario())


class RecordingDelivery:
    """Keeps what each batch delivered (the model that labelled it) and what was abandoned."""

    def __init__(self) -> None:
        self.delivered: list[list[str]] = []
        self.abandoned: list[BaseException] = []

    def begin(self, origins) -> None:
        pass

    def abandon(self, origins, exc: BaseException) -> None:
        self.abandoned.append(exc)

    async def deliver(self, origins, outs) -> None:
        self.delivered.append([o.value["model"]["version"] for o in outs if o.topic == "extracted"])


def _ocr_raw(receipt_id: str) -> bytes:
    from socratext.document import OcrPage, Word
    from streams.events import dumps, ocr_event, parse_upload

    up = parse_upload(dumps({"schema_version": 1, "receipt_id": receipt_id, "bucket": "receipts",
                             "key": "k.jpg", "uploaded_at": "2026-11-26T00:00:00Z"}))[0]
    return dumps(ocr_event(up, OcrPage([Word("TOTAL", (0, 0, 10, 10))], 100, 100), 1, 1, {}))


def test_a_model_that_becomes_pending_during_a_batch_serves_the_next_batch() -> None:
    """The agent's own batch must not count as a batch in flight while it waits to swap: a model loaded
    while a batch runs is served from the next batch on (this deadlocked the worker once)."""
    from streams.agents import Origin

    reg, w, deps = _serving_v1()
    delivery = RecordingDelivery()
    gate = threading.Event()
    label = deps.extractor.label

    def slow_label(pages, images=None):
        gate.wait(5)
        return label(pages, images)

    deps.extractor.label = slow_label  # type: ignore[method-assign]

    async def scenario() -> None:
        with ThreadPoolExecutor(2) as pool:
            first = asyncio.ensure_future(run_extract_batch([_ocr_raw("r-1")], [Origin("ocr", 0, 0)], deps,
                                                            delivery, pool))
            await asyncio.sleep(0.05)
            assert deps.busy
            reg.cur = "v2"
            w.pending = w.check()  # loaded while the first batch runs
            second = asyncio.ensure_future(run_extract_batch([_ocr_raw("r-2")], [Origin("ocr", 0, 1)], deps,
                                                             delivery, pool))
            await asyncio.sleep(0.05)
            assert not second.done() and deps.extractor.version == "v1", "no swap under a running batch"
            gate.set()
            await asyncio.wait_for(asyncio.gather(first, second), 5.0)
            third = run_extract_batch([_ocr_raw("r-3")], [Origin("ocr", 0, 2)], deps, delivery, pool)
            await asyncio.wait_for(third, 5.0)

    asyncio.run(scenario())
    assert delivery.delivered == [["v1"], ["v2"], ["v2"]] and not delivery.abandoned
    assert deps.in_flight == 0


def test_watchers_run_once_for_all_agents_and_stop_with_the_last() -> None:
    _, _, deps = _serving_v1()

    async def scenario() -> None:
        with ThreadPoolExecutor(1) as pool:
            deps.agent_started(pool)
            (task,) = deps._watch_tasks
            deps.agent_started(pool)  # a second agent instance: no second watcher
            assert deps._watch_tasks == [task] and deps.agents == 2
            deps.agent_stopped()
            await asyncio.sleep(0)
            assert not task.done(), "one agent still runs"
            deps.agent_stopped()
            await asyncio.sleep(0)
            assert task.cancelled() and deps._watch_tasks == []

    asyncio.run(scenario())


# --- through the real stack -------------------------------------------------------------------------


def _model_info(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("socratext_model_info{")]


def _wait_for(cond, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


@pytest.fixture
def upgrade_worker(stack: Settings, tmp_path: Path) -> Iterator[tuple[object, str]]:
    from socratext.cli_stream import stop_worker
    from socratext.registry import ModelRegistry
    from tests.streamkit import Worker
    from tests.test_registry import tiny_model_dir

    name = f"upgrade-{uuid.uuid4().hex[:8]}"
    reg = ModelRegistry.from_settings(stack)
    reg.publish(name, "v1", tiny_model_dir(tmp_path / "m1", seed=1), {"micro_f1": 0.1})
    w = Worker(stack, tmp_path / "worker.log")
    w.env.update({"SOCRATEXT_MODEL": f"registry:{name}", "SOCRATEXT_MODEL_POLL_S": "1",
                  "SOCRATEXT_DEVICE": "cpu", "XDG_CACHE_HOME": str(tmp_path / "cache")})
    w.start()
    try:
        yield w, name
    finally:
        if w.proc is not None:
            stop_worker(w.proc)


@pytest.mark.stack
@pytest.mark.slow
def test_worker_follows_promote_and_rollback_without_losing_receipts(
        stack: Settings, upgrade_worker: tuple[object, str], tmp_path: Path) -> None:
    from socratext.cli_stream import consume, upload_files
    from socratext.registry import ModelRegistry
    from streams.topics import DEADLETTER, EXTRACTED
    from tests.streamkit import collect, listen, receipt_images
    from tests.test_registry import tiny_model_dir

    worker, name = upgrade_worker
    reg = ModelRegistry.from_settings(stack)
    images = iter(receipt_images(6, base=7400))
    it = listen(stack)
    sent: dict[str, str] = {}  # receipt id -> the phase it was uploaded in
    events: list[tuple[str, dict]] = []

    def upload(n: int, phase: str) -> set[str]:
        rows = upload_files(stack, [(nm, data) for nm, data, _ in (next(images) for _ in range(n))])
        ids = {r["receipt_id"] for r in rows}
        sent.update(dict.fromkeys(ids, phase))
        return ids

    def wait_out(ids: set[str]) -> None:
        events.extend(collect(it, stack, ids, topics={EXTRACTED, DEADLETTER}))

    def serving() -> list[str]:
        return _model_info(worker.metrics())  # type: ignore[attr-defined]

    def info(version: str) -> list[str]:
        return [f'socratext_model_info{{name="{name}",version="{version}"}} 1.0']

    assert serving() == info("v1")
    wait_out(upload(1, "v1"))
    reg.publish(name, "v2", tiny_model_dir(tmp_path / "m2", seed=2), {"micro_f1": 0.2})  # promoted
    during = upload(2, "during")  # while the worker switches: either version, never lost
    _wait_for(lambda: serving() == info("v2"), 30, "v2 to serve")
    wait_out(during | upload(1, "v2"))
    assert reg.rollback(name) == "v1"
    _wait_for(lambda: serving() == info("v1"), 30, "the rollback to v1")
    wait_out(upload(1, "rolled-back"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not a config")
    reg.publish(name, "v3-broken", broken)
    log = worker.log  # type: ignore[attr-defined]
    _wait_for(lambda: "v3-broken failed to load" in log.read_text(), 30, "the failed load to be logged")
    wait_out(upload(1, "rolled-back"))
    assert serving() == info("v1"), "the broken v3 must not replace the serving model"

    assert [e for t, e in events if t == DEADLETTER] == []
    assert {e["receipt_id"] for t, e in events if t == EXTRACTED} == set(sent)
    version = {e["receipt_id"]: e["model"]["version"] for t, e in events if t == EXTRACTED}
    assert {e["model"]["name"] for t, e in events if t == EXTRACTED} == {name}
    expected = {"v1": {"v1"}, "during": {"v1", "v2"}, "v2": {"v2"}, "rolled-back": {"v1"}}
    for rid, phase in sent.items():
        assert version[rid] in expected[phase], (phase, version[rid])
    # nothing duplicated: one extracted event per receipt in the whole topic
    counts = Counter(v["receipt_id"] for _, v in consume(stack, [stack.topic_extracted], from_beginning=True,
                                                        timeout=5) if isinstance(v, dict) and
                     v.get("receipt_id") in sent)
    assert counts == Counter(dict.fromkeys(sent, 1)), counts
    print(f"\nmodel versions per phase: {Counter((sent[r], v) for r, v in version.items())}")
