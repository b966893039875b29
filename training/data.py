"""The training data of `training.train`: which sources, their training and validation splits, repeats,
labels reconciled with the rules, reviewed receipts and the fixed held-out set of the retrain gate."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from socratext.labels import OTHER
from training.datasets.common import LabeledPage, split_train_val
from training.datasets.reconcile import TEXT_SIMILARITY

SOURCES = ("synthetic", "sroie", "labelstudio")


def load_data(sources: Sequence[str], n_synth: int, val_fraction: float, *, synth_ocr: bool = True,
              synth_repeat: int = 1, synth_cached_only: bool = False, sroie_repeat: int = 1,
              sroie_ocr: bool = False, reconcile: bool = False, reconcile_known: bool = False,
              reconcile_similarity: float = TEXT_SIMILARITY,
              corrections_repeat: int | Mapping[str, int] = 1,
              with_images: bool = False, log: Any = print,
              ) -> tuple[list[LabeledPage], list[LabeledPage], dict[str, Any]]:
    """Training and validation pages from the named sources (held-out splits excluded)."""
    train: list[LabeledPage] = []
    val: list[LabeledPage] = []
    stats: dict[str, Any] = {}
    for src in sources:
        t0 = time.perf_counter()
        if src == "synthetic":
            from training.datasets.synthetic import cache_path, load_synthetic, train_seeds

            seeds = train_seeds(n_synth)
            if synth_cached_only:  # use what a background job has already OCR'd, skip the rest
                seeds = [s for s in seeds if cache_path(s, synth_ocr).is_file()]
            pages = [load_synthetic(s, ocr=synth_ocr, with_image=with_images) for s in seeds]
        elif src == "sroie":
            from training.datasets.sroie import SROIE_DIR, load_sroie, train_stems

            if not SROIE_DIR.exists():
                log(f"skipping sroie: no data at {SROIE_DIR}")
                continue
            pages = [load_sroie(s, ocr=sroie_ocr, with_image=with_images)[0] for s in train_stems()]
        elif src == "labelstudio":
            from training.datasets.labelstudio import SAMPLE, load_export, split

            if not SAMPLE.exists():
                log(f"skipping labelstudio: no export at {SAMPLE}")
                continue
            pages = split(load_export())[0]
        elif Path(src).is_dir():  # a directory of labelled records (training.review.records)
            from training.review.records import load_labelled_pages

            pages = load_labelled_pages(src, source=Path(src).name)
        else:
            raise ValueError(f"unknown data source {src!r}; one of {SOURCES} or a directory")
        corrections: set[str] = set()
        if reconcile and src in ("synthetic", "sroie"):
            pages, taken, corrections = reconcile_pages(pages, known=reconcile_known,
                                                        text_similarity=reconcile_similarity)
            log(f"{src}: word labels taken from the rules: {dict(taken)}; "
                f"{len(corrections)} pages with a proven correction of the rules")
        tr, va = split_train_val(pages, val_fraction)
        times = (corrections_repeat if isinstance(corrections_repeat, int)
                 else corrections_repeat.get(src, 1))
        tr = repeat_pages(tr, corrections, times)
        if src == "synthetic":  # oversampling: the French target data is the scarcest
            tr = tr * max(1, synth_repeat)
        elif src == "sroie":  # oversampling: 205 real receipts against ~600 synthetic ones
            tr = tr * max(1, sroie_repeat)
        train += tr
        val += va
        stats[src] = {"train": len(tr), "val": len(va), "seconds": round(time.perf_counter() - t0, 1),
                      "labels": dict(Counter(lab for p in tr for lab in p.labels if lab != OTHER))}
        log(f"{src}: {len(tr)} train / {len(va)} val pages ({stats[src]['seconds']} s)")
    return train, val, stats


def reconcile_pages(pages: Sequence[LabeledPage], known: bool = False,
                    text_similarity: float = TEXT_SIMILARITY,
                    ) -> tuple[list[LabeledPage], Counter[str], set[str]]:
    """`training.datasets.reconcile` on every page that has field values: the pages, how often each field
    was taken from the rules, and the ids of the pages with a proven correction of the rules. `known`:
    compare readings after correcting them with the known names and addresses of these same pages (what
    serving does with reviewed receipts, `socratext.fields.known`)."""
    import dataclasses

    from socratext.fields.known import KnownValues
    from training.datasets.reconcile import reconcile_with_rules

    memory = KnownValues.from_fields(p.fields for p in pages) if known else None
    out, taken, corrections = [], Counter[str](), set()
    for p in pages:
        if not p.fields:
            out.append(p)
            continue
        rec = reconcile_with_rules(p.page, p.labels, p.fields, known=memory, text_similarity=text_similarity)
        taken.update(rec.taken)
        if rec.corrected:
            corrections.add(p.id)
        out.append(dataclasses.replace(p, labels=rec.labels))
    return out, taken, corrections


def repeat_spec(text: str) -> int | dict[str, int]:
    """`--corrections-repeat`: "4" (every source) or "synthetic=4,sroie=1" (per source, others 1). Why per
    source: synthetic corrections come from the generator's true boxes, SROIE's from matching key values
    to OCR lines, and the model weighs them differently."""
    if "=" not in text:
        return int(text)
    out = {}
    for part in text.split(","):
        src, _, n = part.partition("=")
        out[src.strip()] = int(n)
    return out


def repeat_pages(pages: list[LabeledPage], ids: set[str], times: int) -> list[LabeledPage]:
    """`pages`, with those whose id is in `ids` present `times` times in all: the pages where the derived
    labels provably correct the rules are what a model with rule hints must learn, and they are few
    (8 of 597 synthetic, 32 of 228 SROIE training receipts)."""
    if times <= 1 or not ids:
        return pages
    return pages + [p for p in pages if p.id in ids] * (times - 1)


def load_reviewed(spec: str, log: Any = print) -> list[LabeledPage]:
    """Reviewed receipts: "s3" (labelled records under `settings.reviewed_dataset_prefix`) or a directory."""
    from training.review.records import load_labelled_pages

    if spec == "s3":
        from socratext.settings import get_settings
        from socratext.storage import ObjectStore

        settings = get_settings()
        pages = load_labelled_pages(settings.reviewed_dataset_prefix, store=ObjectStore(settings))
        where = f"s3://{settings.s3_bucket}/{settings.reviewed_dataset_prefix}"
    else:
        pages, where = load_labelled_pages(spec), spec
    log(f"reviewed: {len(pages)} labelled receipts from {where}")
    return sorted(pages, key=content_key)


def content_key(lp: LabeledPage) -> str:
    """A digest of what a labelled page says (words, boxes, labels), to order reviewed receipts by.

    Their store order follows receipt ids, which upstream assigns; ordering by content makes a seeded
    retrain a function of the receipts themselves, so the same corrections give the same model."""
    h = hashlib.sha1()
    for w, lab in zip(lp.page.words, lp.labels, strict=True):
        h.update(f"{w.text}\x1f{w.box}\x1f{lab}\x1e".encode())
    return h.hexdigest()


def load_held_out(spec: str, log: Any = print) -> list[LabeledPage]:
    """The fixed held-out set: comma-separated `DIR` (labelled records), `s3:<prefix>` (labelled records
    in the bucket), `labelstudio` (last 20 % of the sample), `sroie` (last 20 %, SROIE's own OCR lines),
    `synthetic:N` (seeds 900000.., Tesseract, cached). Never trained on."""
    from training.review.records import load_labelled_pages

    pages: list[LabeledPage] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if part.startswith("s3:"):
            from socratext.settings import get_settings
            from socratext.storage import ObjectStore

            got = load_labelled_pages(part[3:], store=ObjectStore(get_settings()), source="held-out")
        elif part == "labelstudio":
            from training.datasets.labelstudio import load_export, split

            got = split(load_export())[1]
        elif part == "sroie":
            from training.datasets.sroie import held_out_stems, load_sroie

            got = [load_sroie(s)[0] for s in held_out_stems()]
        elif part.startswith("synthetic:"):
            from training.datasets.synthetic import HELD_OUT_SEED, load_synthetic

            got = [load_synthetic(s) for s in range(HELD_OUT_SEED, HELD_OUT_SEED + int(part.split(":")[1]))]
        elif Path(part).is_dir():
            got = load_labelled_pages(part, source="held-out")
        else:
            raise ValueError(f"unknown held-out set {part!r}")
        log(f"held-out {part}: {len(got)} pages")
        pages += got
    return pages
