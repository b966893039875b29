"""Stage 1: `receipts.uploaded` → fetch the file → decode → OCR → one `receipts.ocr` event per page.

CPU-bound (image decoding, preprocessing, Tesseract): scale it with more worker processes/partitions
(`socratext worker --stage ocr`), independently of the model stage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image

from socratext.document import OcrPage, WordLabel
from socratext.errors import OCR_FAILED, STORAGE_UNAVAILABLE, SocratextError
from socratext.extractors.rules import label_page
from socratext.privacy import mask_page
from socratext.retry import Backoff, retry_call
from socratext.settings import Settings
from streams.agents import Origin, dead, event_origin, log, track_consumption
from streams.delivery import AtLeastOnce, Delivery
from streams.events import OutEvent, UploadEvent, allowed_buckets, ocr_event, page_receipt_id, parse_upload
from streams.metrics import StreamMetrics
from streams.topics import OCR, UPLOADED

STAGE = "ocr"


class OcrResultLike(Protocol):
    page: OcrPage
    timings_ms: dict[str, float]


@dataclass
class OcrDeps:
    """What stage 1 needs; the worker builds the real ones (`build_ocr_deps`), tests pass fakes."""

    settings: Settings
    fetch: Callable[[str, str, int], bytes]  # (bucket, key, max_bytes) -> bytes, raises SocratextError
    load_images: Callable[..., list[Image.Image]]
    ocr: Callable[[list[Image.Image]], list[Any]]  # images -> [OcrResultLike], one per image
    metrics: StreamMetrics | None = None
    retry_delays: tuple[float, ...] | None = None
    """Fixed pauses instead of the settings' jittered backoff (tests); None = `backoff`."""
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        self.allowed = allowed_buckets(self.settings.s3_allowed_buckets)
        s = self.settings
        self.backoff = Backoff(s.s3_retry_attempts, s.s3_retry_base_s, s.s3_retry_max_s)
        """A fetch that fails with storage_unavailable (the store's fault, not the receipt's) is retried
        with this backoff; after the last attempt the receipt is dead-lettered, from where it is replayed."""


def build_ocr_deps(settings: Settings, metrics: StreamMetrics | None) -> OcrDeps:
    """The real stage-1 dependencies: the S3 object store, `load_images` and the pipeline's OCR stage."""
    from socratext.imaging import load_images
    from socratext.pipeline import OcrStage
    from socratext.storage import ObjectStore

    store = ObjectStore(settings)
    stage = OcrStage(settings)
    if metrics is not None:
        metrics.set_ocr_engine(stage.ocr)
    return OcrDeps(settings, store.get_bytes, load_images, stage, metrics)


def process_ocr_event(raw: bytes, deps: OcrDeps, origin: Origin | None = None) -> list[OutEvent]:
    """One `receipts.uploaded` value → its OCR events and dead letters. Never raises.

    Synchronous and blocking on purpose: the agent runs it in the worker's thread pool.
    """
    m = deps.metrics
    if m is not None:
        m.count(STAGE, "in")
    try:
        uploads = parse_upload(raw, deps.allowed)
    except Exception as exc:  # noqa: BLE001 - every failure is the event's, see streams.events
        return [dead(raw, stage=STAGE, exc=exc, origin=origin, metrics=m)]
    if not uploads and m is not None:
        m.count(STAGE, "skipped")
    out: list[OutEvent] = []
    for upload in uploads:
        out.extend(_process_upload(raw, upload, deps, origin))
    return out


def _store_down(exc: BaseException) -> bool:
    return isinstance(exc, SocratextError) and exc.code == STORAGE_UNAVAILABLE


def _fetch(up: UploadEvent, deps: OcrDeps) -> bytes:
    """Fetch the object, riding out a store outage with jittered backoff; after the last attempt the
    storage_unavailable error goes up (and the receipt to the dead-letter topic), the worker goes on."""
    t0 = time.monotonic()
    tries = 0

    def attempt() -> bytes:
        nonlocal tries
        tries += 1
        return deps.fetch(up.bucket, up.key, deps.settings.max_file_bytes)

    def on_retry(n: int, pause: float, exc: BaseException) -> None:
        log.warning("object store unavailable (attempt %d), retrying in %.1f s", n, pause,
                    extra={"receipt_id": up.receipt_id, "stage": STAGE, "code": STORAGE_UNAVAILABLE})

    delays = iter(deps.retry_delays) if deps.retry_delays is not None else None
    try:
        return retry_call(attempt, deps.backoff, _store_down, sleep=deps.sleep, delays=delays,
                          on_retry=on_retry)
    except SocratextError as exc:
        if not _store_down(exc) or tries < 2:
            raise
        raise SocratextError(STORAGE_UNAVAILABLE, f"{exc.message} (gave up after {tries} attempts in "
                                                  f"{time.monotonic() - t0:.1f} s)") from exc


def _rule_labels(page: OcrPage, timings: dict[str, float], extra: dict[str, Any]) -> list[WordLabel] | None:
    """The rules extractor's labels of the page, for the OCR event (`settings.ocr_event_rule_labels`: the
    extraction stage, whose host time bounds a GPU worker, then does not run the rules again). A failure
    here only leaves them out: the extraction stage labels the page itself and reports what breaks."""
    t0 = time.perf_counter()
    try:
        labels = label_page(page)
    except Exception:  # noqa: BLE001 - never lose a page over an optional hint
        log.warning("rules failed in the OCR stage; the extraction stage will run them", exc_info=True,
                    extra=extra)
        return None
    timings["rules"] = (time.perf_counter() - t0) * 1e3
    return labels


def _process_upload(raw: bytes, up: UploadEvent, deps: OcrDeps, origin: Origin | None) -> list[OutEvent]:
    m = deps.metrics
    extra = {"receipt_id": up.receipt_id, "stage": STAGE}
    try:
        t0 = time.perf_counter()
        data = _fetch(up, deps)
        t1 = time.perf_counter()
        images = deps.load_images(data, name=up.key, settings=deps.settings)
        t2 = time.perf_counter()
    except Exception as exc:  # noqa: BLE001
        return [dead(raw, stage=STAGE, exc=exc, receipt_id=up.receipt_id, origin=origin, metrics=m)]
    if m is not None:
        m.observe_stage("fetch", t1 - t0)
        m.observe_stage("decode", t2 - t1)
    out = []
    n = len(images)
    for number, image in enumerate(images, 1):
        rid = page_receipt_id(up.receipt_id, number, n)
        try:
            t3 = time.perf_counter()
            (result,) = deps.ocr([image])
            ocr_s = time.perf_counter() - t3
        except Exception as exc:  # noqa: BLE001 - one bad page does not lose the others
            out.append(dead(raw, stage=STAGE, exc=exc, receipt_id=rid, origin=origin, metrics=m,
                            fallback_code=OCR_FAILED))
            continue
        timings = {"fetch": (t1 - t0) * 1e3, "decode": (t2 - t1) * 1e3 / n, **result.timings_ms}
        seen = getattr(result, "image", None) or image  # the preprocessed page the boxes refer to
        attached = seen if deps.settings.ocr_event_page_image else None
        page = mask_page(result.page)  # as it leaves this stage: no card number (socratext.privacy)
        rules = _rule_labels(page, timings, extra) if deps.settings.ocr_event_rule_labels else None
        out.append(OutEvent(OCR, rid, ocr_event(up, page, number, n, timings, attached, rules), origin))
        if m is not None:
            m.observe_stage("ocr", ocr_s)
            m.count(STAGE, "out")
        log.info("ocr done: %d words", len(result.page.words), extra={**extra, "receipt_id": rid})
    return out


def register(app: Any, topics: dict[str, Any], deps: Callable[[], OcrDeps], executor: Executor,
             concurrency: int = 1, delivery: Delivery | None = None) -> Any:
    """Attach the stage-1 agent to a Faust app; `deps()` is awaited lazily in the executor (loads once).

    Each event's outputs are delivered (streams.delivery: one transaction with the event's offset, or
    published and acknowledged) before the loop moves on and Faust acknowledges the event."""
    delivery = delivery or AtLeastOnce(topics)

    @app.agent(topics[UPLOADED], name="socratext.ocr", concurrency=concurrency)
    async def ocr_agent(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        d = await loop.run_in_executor(executor, deps)
        track_consumption(stream, delivery)  # registers each event as in flight as it is taken
        async for event in stream.events():
            origin = event_origin(event)
            try:
                outs = await loop.run_in_executor(executor, process_ocr_event, event.value, d, origin)
            except BaseException as exc:  # cancelled at shutdown: later events must not commit past it
                delivery.abandon([origin], exc)
                raise
            await delivery.deliver([origin], outs)

    return ocr_agent

