"""Stage 2: `receipts.ocr` → micro-batches → extractor (one loaded model) → field assembly →
`receipts.extracted`, plus `receipts.review` for receipts below the review threshold.

Model-bound (GPU when there is one): batching amortises the model call, so this stage takes
`settings.batch_size` events at a time or whatever arrived within `settings.batch_window_s`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from socratext.document import OcrPage, Receipt, WordLabel
from socratext.errors import MODEL_FAILED, SocratextError
from socratext.extractors.base import Extractor
from socratext.settings import Settings
from streams.agents import Origin, dead, log, publish
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


def _default_assemble() -> Callable[..., Receipt]:
    from socratext.fields.assemble import assemble_receipt

    return assemble_receipt


@dataclass
class ExtractDeps:
    """What stage 2 needs: the extractor stays loaded for the worker's lifetime."""

    settings: Settings
    extractor: Extractor
    assemble: Callable[..., Receipt] = field(default_factory=_default_assemble)
    metrics: StreamMetrics | None = None


def build_extract_deps(settings: Settings, metrics: StreamMetrics | None) -> ExtractDeps:
    """Load the extractor named by `settings.model` ("rules", "default" or a model path, see
    `socratext.pipeline.load_extractor`) once, and announce it in `socratext_model_info`."""
    from socratext.pipeline import load_extractor

    extractor = load_extractor(settings.model, settings)
    if metrics is not None:
        metrics.set_model(extractor.name, extractor.version)
    log.info("extractor loaded: %s %s", extractor.name, extractor.version, extra={"stage": STAGE})
    return ExtractDeps(settings, extractor, metrics=metrics)


def _label_batch(pages: list[OcrPage], extractor: Extractor) -> list[list[WordLabel] | BaseException]:
    """Label all pages in one model call; if that call fails, label them one by one so that only the
    page that breaks the model is lost (and the error is attributed to it)."""

    def check(labels: Any, batch: list[OcrPage]) -> list[list[WordLabel]]:
        if not isinstance(labels, list) or len(labels) != len(batch) or any(
                len(lab) != len(p.words) for lab, p in zip(labels, batch, strict=True)):
            raise SocratextError(MODEL_FAILED, "the extractor's label count does not match the words")
        return labels

    try:
        return list(check(extractor.label(pages, None), pages))
    except Exception as exc:  # noqa: BLE001 - fall back to isolate the culprit
        if len(pages) == 1:
            return [exc]
        log.warning("batch of %d failed in the extractor; retrying one by one", len(pages),
                    extra={"stage": STAGE})
    out: list[list[WordLabel] | BaseException] = []
    for p in pages:
        try:
            out.append(check(extractor.label([p], None), [p])[0])
        except Exception as exc:  # noqa: BLE001
            out.append(exc)
    return out


def process_extract_batch(raws: list[bytes], deps: ExtractDeps,
                          origins: list[Origin] | None = None) -> list[OutEvent]:
    """A micro-batch of `receipts.ocr` values → extracted (+ review) events and dead letters. Never raises;
    one failing receipt does not spoil its batch. Blocking: the agent runs it in the thread pool."""
    m = deps.metrics
    origins = origins or [Origin()] * len(raws)
    if m is not None:
        m.count(STAGE, "in", len(raws))
        m.batch_size.observe(len(raws))
    out: list[OutEvent] = []
    good: list[tuple[bytes, OcrEvent, Origin]] = []
    seen: set[str] = set()
    for raw, origin in zip(raws, origins, strict=True):
        try:
            ev = parse_ocr(raw)
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

    extractor = deps.extractor
    model = {"name": extractor.name, "version": extractor.version}
    t0 = time.perf_counter()
    labels = _label_batch([ev.page for _, ev, _ in good], extractor)
    model_s = (time.perf_counter() - t0) / len(good)
    for (raw, ev, origin), labs in zip(good, labels, strict=True):
        if isinstance(labs, BaseException):
            out.append(dead(raw, stage=STAGE, exc=labs, receipt_id=ev.receipt_id, origin=origin, metrics=m,
                            fallback_code=MODEL_FAILED))
            continue
        try:
            t1 = time.perf_counter()
            rec = deps.assemble(ev.page, labs, receipt_id=ev.receipt_id, source=ev.source, model=model,
                                review_threshold=deps.settings.review_threshold)
            assemble_s = time.perf_counter() - t1
            rec.timings_ms = {**ev.timings_ms, **rec.timings_ms, "model": model_s * 1e3,
                              "assemble": assemble_s * 1e3}
            value = extracted_event(rec.export(), ev.uploaded_at, now_iso())
        except Exception as exc:  # noqa: BLE001
            out.append(dead(raw, stage=STAGE, exc=exc, receipt_id=ev.receipt_id, origin=origin, metrics=m))
            continue
        out.append(OutEvent(EXTRACTED, ev.receipt_id, value))
        if rec.needs_review:
            out.append(OutEvent(REVIEW, ev.receipt_id, review_event(value, ev.page, labs)))
        if m is not None:
            m.count(STAGE, "out")
            m.observe_stage("model", model_s)
            m.observe_stage("assemble", assemble_s)
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


def register(app: Any, topics: dict[str, Any], deps: Callable[[], ExtractDeps], executor: Executor,
             batch_size: int, batch_window_s: float) -> Any:
    """Attach the stage-2 agent to a Faust app; the extractor is loaded (in the executor) when it starts.

    `take_events` is `stream.take` with the events instead of the bare values (we keep their offsets for
    the dead letters). Faust acks a batch's events when control comes back to `take` for the next batch;
    the batch's results are published and their delivery awaited before that.
    """

    @app.agent(topics[OCR], name="socratext.extract")
    async def extract_agent(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        d = await loop.run_in_executor(executor, deps)
        async for events in stream.take_events(batch_size, within=batch_window_s):
            raws = [e.value for e in events]
            origins = [Origin(e.message.topic, e.message.partition, e.message.offset) for e in events]
            outs = await loop.run_in_executor(executor, process_extract_batch, raws, d, origins)
            await publish(outs, topics)  # before take() acks the batch

    return extract_agent
