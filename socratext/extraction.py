"""Stage 2 of the extraction path, written once: label a micro-batch of OCR pages with one extractor, then
assemble each page's receipt.

`extract_pages` is what both entry points run: the batch tool and the library (`socratext.pipeline`'s
`ExtractStage`, behind `socratext extract`, `training.evaluate` and the benchmarks) and the extraction
workers (`streams.agents.extract.process_extract_batch`, which only parses the events around it and turns
its results into events, dead letters and metrics). The same pages with the same extractor give the same
receipts on both paths.

The batch is labelled in one model call; when that call fails, the pages are labelled one by one, so only
the page that breaks the model is lost, and the error is attributed to it. A page that fails (in the model
or in field assembly) comes back as an `ExtractFailure`; the others come out as usual.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from socratext.document import OcrPage, Receipt, WordLabel
from socratext.errors import INTERNAL, MODEL_FAILED, SocratextError
from socratext.extractors.base import Extractor
from socratext.fields.known import KnownValues

log = logging.getLogger(__name__)
STAGE = "extract"


@dataclass
class ExtractFailure:
    """A page that stage 2 could not extract: the exception, and the step it was raised in ("model": the
    extractor's labelling; "assemble": field assembly)."""

    error: BaseException
    step: str

    @property
    def fallback_code(self) -> str:
        """The code of an error that has none of its own (not a `SocratextError`): a labelling failure is
        the model's (MODEL_FAILED), an assembly failure a bug (INTERNAL)."""
        return MODEL_FAILED if self.step == "model" else INTERNAL

    @property
    def code(self) -> str:
        return self.error.code if isinstance(self.error, SocratextError) else self.fallback_code

    @property
    def message(self) -> str:
        if isinstance(self.error, SocratextError):
            return self.error.message
        return f"{type(self.error).__name__}: {self.error}"


def label_pages(pages: Sequence[OcrPage], extractor: Extractor, images: Sequence[Any] | None = None,
                rule_labels: Sequence[list[WordLabel] | None] | None = None,
                ) -> list[list[WordLabel] | BaseException]:
    """Label all pages in one model call; if that call fails, label them one by one so that only the
    page that breaks the model is lost (and the error is attributed to it). `images`: the page images
    (None where a page has none), for models that look at pixels; `rule_labels`: the rules' labels the
    OCR stage sent (None where a page has none), for an extractor that takes them (`takes_rule_labels`).
    A label count that does not match a page's words is that page's `SocratextError(MODEL_FAILED)`."""
    pages = list(pages)
    images = list(images) if images is not None else None
    rule_labels = list(rule_labels) if rule_labels is not None else None
    if rule_labels is not None and not getattr(extractor, "takes_rule_labels", False):
        rule_labels = None

    def call(batch: list[OcrPage], imgs: list[Any] | None, rules: list[Any] | None) -> Any:
        if rules is None:
            return extractor.label(batch, imgs)
        return extractor.label(batch, imgs, rule_labels=rules)  # type: ignore[call-arg]

    def check(labels: Any, batch: list[OcrPage]) -> list[list[WordLabel]]:
        if not isinstance(labels, list) or len(labels) != len(batch) or any(
                len(lab) != len(p.words) for lab, p in zip(labels, batch, strict=True)):
            raise SocratextError(MODEL_FAILED, "the extractor's label count does not match the words")
        return labels

    try:
        return list(check(call(pages, images, rule_labels), pages))
    except Exception as exc:  # noqa: BLE001 - fall back to isolate the culprit
        if len(pages) == 1:
            return [exc]
        log.warning("batch of %d failed in the extractor; retrying one by one", len(pages),
                    extra={"stage": STAGE})
    out: list[list[WordLabel] | BaseException] = []
    for k, p in enumerate(pages):
        try:
            out.append(check(call([p], [images[k]] if images else None,
                                  [rule_labels[k]] if rule_labels else None), [p])[0])
        except Exception as exc:  # noqa: BLE001
            out.append(exc)
    return out


def default_assemble() -> Callable[..., Receipt]:
    """The field assembly stage 2 runs unless told otherwise: `assemble_receipt` (imported when needed)."""
    from socratext.fields.assemble import assemble_receipt

    return assemble_receipt


def extract_pages(extractor: Extractor, pages: Sequence[OcrPage], images: Sequence[Any] | None,
                  receipt_ids: Sequence[str], sources: Sequence[dict[str, str]],
                  rule_labels: Sequence[list[WordLabel] | None] | None = None, *,
                  review_threshold: float, known: KnownValues | None = None,
                  assemble: Callable[..., Receipt] | None = None) -> list[Receipt | ExtractFailure]:
    """Stage 2 on a micro-batch: label the pages (`label_pages`: one model call, each page's failure its
    own), then assemble each page's `Receipt`; per page, in order, the receipt or its `ExtractFailure`.
    Never raises for one page's sake.

    `images[i]` / `rule_labels[i]`: page i's image and the OCR stage's rule labels, None where it has none
    (all None is the same as not given). Each receipt's `timings_ms` gets "model" (the model call's time
    divided among the batch's pages) and "assemble" (its own assembly), in ms, after what assembly put
    there; `ocr` and `word_labels` hold its page and labels. `known`: reviewed names and addresses used
    at assembly (`socratext.fields.known`). `assemble`: the assembly function (default
    `socratext.fields.assemble.assemble_receipt`), replaceable for tests and step timing."""
    assemble = assemble or default_assemble()
    pages = list(pages)
    if not pages:
        return []
    imgs = list(images) if images is not None and any(i is not None for i in images) else None
    rules = (list(rule_labels) if rule_labels is not None and any(r is not None for r in rule_labels)
             else None)
    extra = {"known": known} if known is not None else {}
    model = {"name": extractor.name, "version": extractor.version}
    t0 = time.perf_counter()
    labels = label_pages(pages, extractor, imgs, rules)
    model_ms = (time.perf_counter() - t0) * 1e3 / len(pages)
    out: list[Receipt | ExtractFailure] = []
    for page, labs, rid, src in zip(pages, labels, receipt_ids, sources, strict=True):
        if isinstance(labs, BaseException):
            out.append(ExtractFailure(labs, "model"))
            continue
        try:
            t1 = time.perf_counter()
            rec = assemble(page, labs, receipt_id=rid, source=src, model=model,
                           review_threshold=review_threshold, **extra)
            assemble_ms = (time.perf_counter() - t1) * 1e3
            rec.timings_ms["model"] = model_ms
            rec.timings_ms["assemble"] = assemble_ms
            rec.ocr, rec.word_labels = page, labs
        except Exception as exc:  # noqa: BLE001 - one receipt's problem, not its batch's
            out.append(ExtractFailure(exc, "assemble"))
            continue
        out.append(rec)
    return out
