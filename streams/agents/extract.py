"""Stage 2: `receipts.ocr` → micro-batches → extractor (one loaded model) → field assembly →
`receipts.extracted`, plus `receipts.review` for receipts below the review threshold.

Model-bound (GPU when there is one): batching amortises the model call, so this stage takes
`settings.batch_size` events at a time or whatever arrived within `settings.batch_window_s`.

Live upgrade: with `settings.model = "registry:<name>"` a `ModelWatcher` reads the registry's
`current.json` every `settings.model_poll_s` seconds; when it names another version, that version is
fetched and loaded in the thread pool beside the serving one, and swapped in between two batches (a
batch is always labelled by one model, and the events say which). A version that fails to load leaves
the serving model in place.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import math
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from socratext.document import Receipt
from socratext.errors import MODEL_FAILED, SocratextError
from socratext.extraction import ExtractFailure, default_assemble, extract_pages
from socratext.extractors.base import Extractor, uses_page_images
from socratext.fields.known import KnownValues
from socratext.settings import Settings
from streams.agents import Origin, dead, event_origin, log, track_consumption
from streams.delivery import AtLeastOnce, Delivery
from streams.events import (
    OcrEvent,
    OutEvent,
    extracted_event,
    now_iso,
    parse_ocr,
    review_event,
    seconds_since,
)
from streams.metrics import StreamMetrics
from streams.topics import EXTRACTED, OCR, REVIEW

STAGE = "extract"


def settle_heap() -> None:
    """Take everything alive now — torch, transformers, the loaded model: some 400,000 objects — out of
    the cyclic garbage collector's way (`gc.freeze`), after a collection of what loading left behind.

    Python's full collections walk every tracked object. With a model loaded they cost the extraction
    stage about 1 ms per receipt, 14 % of its time on CPU and a fifth of its host part, the part that
    bounds a GPU worker (bench/bench_extract_steps.py, `--no-gc-freeze`). The model lives as long as the
    worker; a swapped-out one is freed by `unfreeze` + `collect` here at the next swap. Memory freed by
    reference counting (all of a batch's objects) is unaffected."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def release_heap() -> None:
    """Hand the frozen objects back to the collector (worker stop), so that the interpreter's exit
    finalises them as usual."""
    gc.unfreeze()


class ModelWatcher:
    """Follows the `current` version of one registry model (see `socratext.registry`).

    `check()` is blocking (it runs in the thread pool) and never raises: an unreachable registry or a
    version that does not load is logged and the serving model stays. A version that failed is retried
    only after `retry_s`, so a broken upload is not downloaded again at every poll.
    """

    def __init__(self, name: str, settings: Settings, registry: Any = None,
                 load: Callable[[str], Extractor] | None = None, clock: Callable[[], float] = time.monotonic,
                 ) -> None:
        self.name = name
        self.settings = settings
        self.poll_s = max(0.05, float(settings.model_poll_s))
        self.retry_s = max(60.0, 4 * self.poll_s)
        self._registry = registry
        self._load = load
        self.clock = clock
        self.version: str | None = None  # the registry version now serving
        self.pending: tuple[str, Extractor] | None = None  # loaded, waiting for the end of a batch
        self.failed: dict[str, float] = {}  # version -> when it failed to load
        self.last_error: str | None = None

    @property
    def registry(self) -> Any:
        if self._registry is None:
            from socratext.registry import ModelRegistry

            self._registry = ModelRegistry.from_settings(self.settings)
        return self._registry

    def load(self, version: str) -> Extractor:
        """Fetch and load `name@version` (blocking); the extractor is named after the registry entry."""
        if self._load is not None:
            return self._load(version)
        from socratext.registry import load_registry_extractor

        return load_registry_extractor(f"registry:{self.name}@{version}", self.settings, self.registry)

    def load_current(self) -> Extractor:
        """The first load, at worker start: the current version must exist (no model, no service)."""
        version = self.registry.resolve(self.name)
        extractor = self.load(version)
        self.version = version
        return extractor

    def check(self) -> tuple[str, Extractor] | None:
        """If `current` names another version than the serving one, load it and return it (blocking)."""
        try:
            version = self.registry.current(self.name)
        except Exception as exc:  # noqa: BLE001 - the store being down must not stop the serving model
            log.warning("model registry unreachable, keeping %s@%s: %s", self.name, self.version, exc,
                        extra={"stage": STAGE})
            return None
        if version is None or version == self.version:
            return None
        if self.clock() - self.failed.get(version, -math.inf) < self.retry_s:
            return None
        log.info("model %s: current is now %s (serving %s), loading it", self.name, version, self.version,
                 extra={"stage": STAGE})
        try:
            extractor = self.load(version)
        except Exception as exc:  # noqa: BLE001
            self.failed[version] = self.clock()
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.error("model %s@%s failed to load, keeping %s: %s", self.name, version, self.version,
                      self.last_error, extra={"stage": STAGE, "code": MODEL_FAILED},
                      exc_info=not isinstance(exc, SocratextError))
            return None
        self.failed.pop(version, None)
        return version, extractor


class KnownValuesWatcher:
    """Re-reads the known names and addresses (`settings.known_values`, a file or an s3:// object) every
    `model_poll_s` seconds, so that the file the learning loop rewrites (`training.known_values --s3`) is
    used without a restart. `check()` is blocking and never raises: an unreadable or broken file is logged
    and the values in use stay."""

    def __init__(self, settings: Settings, read: Callable[[], bytes] | None = None) -> None:
        from socratext.pipeline import read_known_values

        self.spec = settings.known_values
        self.poll_s = max(0.05, float(settings.model_poll_s))
        self._read = read or (lambda: read_known_values(self.spec, settings))
        self.digest: str | None = None

    def load(self) -> KnownValues:
        """The first load, at worker start: a configured file must be readable."""
        data = self._read()
        kv = KnownValues.loads(data)
        self.digest = hashlib.sha256(data).hexdigest()
        log.info("known values: %d names and addresses from %s", len(kv), self.spec, extra={"stage": STAGE})
        return kv

    def check(self) -> KnownValues | None:
        """The file's new contents when they changed since the last look, else None."""
        try:
            data = self._read()
        except Exception as exc:  # noqa: BLE001 - the store being down must not stop extraction
            log.warning("known values unreadable, keeping the current ones: %s", exc, extra={"stage": STAGE})
            return None
        digest = hashlib.sha256(data).hexdigest()
        if digest == self.digest:
            return None
        self.digest = digest  # a broken file is reported once, not at every poll
        try:
            kv = KnownValues.loads(data)
        except Exception as exc:  # noqa: BLE001
            log.error("known values in %s do not load, keeping the current ones: %s", self.spec, exc,
                      extra={"stage": STAGE})
            return None
        log.info("known values reloaded: %d names and addresses", len(kv), extra={"stage": STAGE})
        return kv


@dataclass
class ExtractDeps:
    """What stage 2 needs: the extractor stays loaded for the worker's lifetime, unless a `watcher`
    follows a registry model; then `swap()` replaces it between batches."""

    settings: Settings
    extractor: Extractor
    assemble: Callable[..., Receipt] = field(default_factory=default_assemble)
    metrics: StreamMetrics | None = None
    watcher: ModelWatcher | None = None
    in_flight: int = 0  # batches being processed (counted by the agents, on the event loop)
    known: KnownValues | None = None  # reviewed names and addresses used at assembly (socratext.fields.known)
    known_watcher: KnownValuesWatcher | None = None
    agents: int = 0  # agent instances running on these deps (extract_concurrency)
    _watch_tasks: list[asyncio.Future[Any]] = field(default_factory=list, init=False, repr=False)

    @property
    def busy(self) -> bool:
        """A batch is being processed: a new model waits."""
        return self.in_flight > 0

    def swap(self) -> bool:
        """Serve the watcher's pending model, if any. Called only between batches, when none is in
        flight (the event loop thread is the only writer, so a batch never sees two models and the old
        one is not in use when it is let go). Returns True when the model changed."""
        w = self.watcher
        if w is None or w.pending is None or self.busy:
            return False
        version, new = w.pending
        old, w.pending = self.extractor, None
        self.extractor, w.version = new, version
        if self.metrics is not None:
            self.metrics.set_model(new.name, new.version)
        log.info("model switched: %s %s -> %s %s", old.name, old.version, new.name, new.version,
                 extra={"stage": STAGE})
        del old
        settle_heap()  # the old model freed, the new one out of the collector's way
        return True

    async def before_batch(self) -> None:
        """Swap in a pending model before the next batch. With several agents on these deps, batches of
        the others may be in flight: wait for them (not starting a new one meanwhile) rather than let a
        steady load, which always has a batch running somewhere, hold the new model back for ever."""
        w = self.watcher
        while w is not None and w.pending is not None and self.busy:
            await asyncio.sleep(0.005)
        self.swap()

    def agent_started(self, executor: Executor) -> None:
        """The first agent instance on these deps starts the model and known-values watchers."""
        self.agents += 1
        if self.agents == 1:
            self._watch_tasks = [asyncio.ensure_future(watch(self, executor))
                                 for watch, wanted in ((watch_model, self.watcher),
                                                       (watch_known_values, self.known_watcher))
                                 if wanted is not None]

    def agent_stopped(self) -> None:
        """The last agent instance to stop stops the watchers."""
        self.agents -= 1
        if self.agents == 0:
            for task in self._watch_tasks:
                task.cancel()
            self._watch_tasks = []
            release_heap()


def build_extract_deps(settings: Settings, metrics: StreamMetrics | None) -> ExtractDeps:
    """Load the extractor named by `settings.model` ("rules", "default", a model path or a registry
    reference, see `socratext.pipeline.load_extractor`) once, and announce it in `socratext_model_info`.
    "registry:<name>" (not pinned to a version) also gets a `ModelWatcher` for live upgrades, unless
    `model_poll_s <= 0`."""
    from socratext.pipeline import load_extractor
    from socratext.registry import parse_model_ref

    ref = parse_model_ref(settings.model)
    watcher = None
    if ref is not None and ref[1] is None and settings.model_poll_s > 0:
        watcher = ModelWatcher(ref[0], settings)
        extractor = watcher.load_current()
    else:
        extractor = load_extractor(settings.model, settings)
    if metrics is not None:
        metrics.set_model(extractor.name, extractor.version)
    log.info("extractor loaded: %s %s", extractor.name, extractor.version, extra={"stage": STAGE})
    known_watcher = KnownValuesWatcher(settings) if settings.known_values else None
    known = known_watcher.load() if known_watcher is not None else None
    settle_heap()
    return ExtractDeps(settings, extractor, metrics=metrics, watcher=watcher, known=known,
                       known_watcher=known_watcher if settings.model_poll_s > 0 else None)


async def _poll(poll_s: float, step: Callable[[], Awaitable[None]], what: str) -> None:
    """Run `step` every `poll_s` seconds for the worker's lifetime; a bug in one step is logged and the
    polling goes on."""
    while True:
        await asyncio.sleep(poll_s)
        try:
            await step()
        except Exception:  # a bug here must not end the polling for the worker's lifetime
            log.exception("%s failed; polling goes on", what, extra={"stage": STAGE})


async def watch_model(deps: ExtractDeps, executor: Executor) -> None:
    """Poll the registry every `model_poll_s` (the check and the load run in the thread pool, so the event
    loop keeps heartbeating); a loaded model is swapped in at once when no batch is running, otherwise
    by the agent before its next batch."""
    w = deps.watcher
    if w is None:
        return
    loop = asyncio.get_running_loop()

    async def step() -> None:
        if w.pending is None:
            w.pending = await loop.run_in_executor(executor, w.check)
        deps.swap()

    await _poll(w.poll_s, step, "model watcher")


async def watch_known_values(deps: ExtractDeps, executor: Executor) -> None:
    """Poll the known-values file (read in the thread pool); new values serve from the next batch on."""
    w = deps.known_watcher
    if w is None:
        return
    loop = asyncio.get_running_loop()

    async def step() -> None:
        new = await loop.run_in_executor(executor, w.check)
        if new is not None:
            deps.known = new

    await _poll(w.poll_s, step, "known-values watcher")


def process_extract_batch(raws: list[bytes], deps: ExtractDeps,
                          origins: list[Origin] | None = None) -> list[OutEvent]:
    """A micro-batch of `receipts.ocr` values → extracted (+ review) events and dead letters. Never raises;
    one failing receipt does not spoil its batch. Blocking: the agent runs it in the thread pool.

    Parses the events, then runs stage 2 as the CLI does (`socratext.extraction.extract_pages`: one model
    call, each page's failure its own, assembly), then turns each receipt into its events."""
    m = deps.metrics
    origins = origins or [Origin()] * len(raws)
    if m is not None:
        m.count(STAGE, "in", len(raws))
        m.batch_size.observe(len(raws))
    out: list[OutEvent] = []
    good: list[tuple[bytes, OcrEvent, Origin]] = []
    seen: set[str] = set()
    extractor = deps.extractor  # one batch, one model (a new registry version switches between batches)
    decode_images = uses_page_images(extractor)
    for raw, origin in zip(raws, origins, strict=True):
        try:
            ev = parse_ocr(raw, decode_image=decode_images)
        except Exception as exc:  # noqa: BLE001
            out.append(dead(raw, stage=STAGE, exc=exc, origin=origin, metrics=m))
            continue
        if ev.receipt_id in seen:  # a redelivery inside one batch: same id, same result
            if m is not None:
                m.count(STAGE, "duplicate")
            continue
        seen.add(ev.receipt_id)
        good.append((raw, ev, origin))
    if not good:
        return out

    results = extract_pages(extractor, [ev.page for _, ev, _ in good], [ev.image for _, ev, _ in good],
                            [ev.receipt_id for _, ev, _ in good], [ev.source for _, ev, _ in good],
                            [ev.rule_labels for _, ev, _ in good],
                            review_threshold=deps.settings.review_threshold,
                            known=deps.known,  # one batch, one set of known values
                            assemble=deps.assemble)
    for (raw, ev, origin), rec in zip(good, results, strict=True):
        if isinstance(rec, ExtractFailure):
            out.append(dead(raw, stage=STAGE, exc=rec.error, receipt_id=ev.receipt_id, origin=origin,
                            metrics=m, fallback_code=rec.fallback_code))
            continue
        try:
            rec.timings_ms = {**ev.timings_ms, **rec.timings_ms}  # the OCR stage's, then this stage's
            value = extracted_event(rec.export(), ev.uploaded_at, now_iso())
        except Exception as exc:  # noqa: BLE001
            out.append(dead(raw, stage=STAGE, exc=exc, receipt_id=ev.receipt_id, origin=origin, metrics=m))
            continue
        out.append(OutEvent(EXTRACTED, ev.receipt_id, value, origin))
        if rec.needs_review:
            out.append(OutEvent(REVIEW, ev.receipt_id, review_event(value, ev.page, rec.word_labels or [],
                                                                    ev.page_image), origin))
        if m is not None:
            m.count(STAGE, "out")
            m.observe_stage("model", rec.timings_ms["model"] / 1e3)
            m.observe_stage("assemble", rec.timings_ms["assemble"] / 1e3)
            m.confidence.observe(rec.confidence)
            age = seconds_since(ev.uploaded_at)
            if age is not None and age >= 0:
                m.end_to_end.observe(age)
            if rec.needs_review:
                m.review.inc()
                m.count(STAGE, "review")
        log.info("extracted: confidence %.3f%s", rec.confidence, " (review)" if rec.needs_review else "",
                 extra={"receipt_id": ev.receipt_id, "stage": STAGE})
    return out


async def run_extract_batch(raws: list[bytes], origins: list[Origin], d: ExtractDeps, delivery: Delivery,
                            executor: Executor) -> None:
    """One micro-batch, as an agent runs it: swap in a pending model (before this batch counts itself
    in flight, or it would wait for itself), label and assemble in the thread pool, then deliver (before
    `take()` acks the batch). Cancelled at shutdown, the batch is abandoned so later ones wait for it."""
    delivery.begin(origins)
    try:
        await d.before_batch()  # between batches only: one batch, one model
        d.in_flight += 1
        try:
            outs = await asyncio.get_running_loop().run_in_executor(
                executor, process_extract_batch, raws, d, origins)
        finally:
            d.in_flight -= 1
    except BaseException as exc:
        delivery.abandon(origins, exc)
        raise
    await delivery.deliver(origins, outs)


def register(app: Any, topics: dict[str, Any], deps: Callable[[], ExtractDeps], executor: Executor,
             batch_size: int, batch_window_s: float, concurrency: int = 1,
             delivery: Delivery | None = None) -> Any:
    """Attach the stage-2 agent to a Faust app; the extractor is loaded (in the executor) when it starts.

    `take_events` is `stream.take` with the events instead of the bare values (we keep their offsets for
    the dead letters). Faust acks a batch's events when control comes back to `take` for the next batch;
    the batch's results are delivered before that (streams.delivery: in one transaction per input
    partition with the batch's offsets, or published and acknowledged).

    `concurrency` agent instances share the extractor, each with its own micro-batches (Faust commits an
    offset only once every event below it is acked, so at-least-once holds). Two overlap one batch's
    host work (parsing, tokenising, rules, assembly: Python, under the GIL) with the other's model pass
    (torch releases the GIL, on the CPU as while it waits for a GPU): `settings.extract_concurrency`.
    """

    delivery = delivery or AtLeastOnce(topics)

    @app.agent(topics[OCR], name="socratext.extract", concurrency=concurrency)
    async def extract_agent(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        d = await loop.run_in_executor(executor, deps)
        d.agent_started(executor)
        track_consumption(stream, delivery)
        try:
            async for events in stream.take_events(batch_size, within=batch_window_s):
                origins = [event_origin(e) for e in events]
                await run_extract_batch([e.value for e in events], origins, d, delivery, executor)
        finally:
            d.agent_stopped()

    return extract_agent
