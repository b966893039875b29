"""Train a layout token classifier (LayoutLMv3 / LayoutLMv2) on word-labelled receipts.

    python -m training.train --lr 4e-4 --batch-size 8 --model layoutlmv3-mini \\
        --data synthetic,sroie,labelstudio --n-synth 400 --epochs 12 --out runs/ckpt/small

`--model` is either an architecture name — `layoutlmv3-tiny|small`, `layoutlmv2-tiny|small` — trained from
scratch with a WordPiece tokenizer learned on the training text, or a model directory / hub id to
fine-tune (its own tokenizer; the classification head is re-initialised if its label set differs).
Text+layout LayoutLMv3 (`visual_embed=False`) is the default: on a 2-core CPU budget the image branch
costs more than it gives, and Label Studio data has no images (`--visual` turns it on).

Data: synthetic French receipts (seeds 0..n-1, OCR'd with Tesseract and labels transferred, cached),
SROIE's training split (key values matched to its lines; `--sroie-ocr` moves the labels onto
Tesseract's words) and the Label Studio sample's training split. The held-out sets (SROIE last 20 %,
Label Studio last 20 %, synthetic seeds ≥ 900000) are never read. Validation = the last 10 % of each
training source; early stopping on the word-level macro F1 over labels seen in validation.

Optimiser AdamW with linear warmup then linear decay; seeded (python, numpy, torch) for reproducible
runs — on the CPU with `--threads 1`, the same data and seed give the same weights, because the WordPiece
vocabulary (`learn_vocab`) and the order of reviewed receipts (`content_key`) do not depend on hash order
or receipt ids either; TensorBoard logs in `runs/<run-name>/`; the best checkpoint (save_pretrained +
tokenizer + labels.json + model_card.md) in `--out`; `--s3` also uploads the TensorBoard logs to
`runs/<run-name>/` and the checkpoint to `training/<run-name>/model/` in the object store.

Retraining (the learning loop, see training/review/):

    python -m training.train --init-from registry:socratext-layout --reviewed s3 \
        --data synthetic --held-out DIR --s3

`--init-from` starts from a model's weights and tokenizer (`registry:<name>[@<version>]` or a model dir);
`--reviewed` adds the reviewed receipts (labelled records under `settings.reviewed_dataset_prefix`, or a
directory of them), oversampled `--reviewed-repeat` times, to the base data named by `--data` (kept so
the model does not forget). A source in `--data` may also be a directory of labelled records. The best
checkpoint and the registry's current model are both scored on the fixed `--held-out` set (word-level
macro F1); with `--s3` the new version is published to the model registry (`models/<name>/<version>/`,
name = `--registry-name`, default the `--init-from` registry name) and made current only if its held-out
F1 is not below the current version's — otherwise nothing is published, and the run says why.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shlex
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from socratext.labels import BIO_LABELS, LABEL_SET_VERSION, OTHER, WORD_LABELS
from socratext.model.encoding import Window, bio_tags, collate, encode_page, image_input, layout_boxes
from socratext.model.extractor import LayoutModelExtractor, model_class, uses_images
from socratext.model.hints import enable_rule_hints, rule_hints, uses_rule_hints
from socratext.model.model_dir import save_model_dir
from socratext.model.tokenizer import load_tokenizer, train_wordpiece
from socratext.settings import REPO_ROOT
from training.datasets.common import VAL_FRACTION, LabeledPage, split_train_val
from training.datasets.reconcile import TEXT_SIMILARITY

ARCHS = ("layoutlmv3-tiny", "layoutlmv3-mini", "layoutlmv3-small", "layoutlmv2-tiny", "layoutlmv2-small")
MINI = {"hidden_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 512,
        "has_relative_attention_bias": False, "has_spatial_attention_bias": False}
"""`layoutlmv3-mini`, the CPU default: LayoutLMv3's 1-D and 2-D relative attention biases are built from
(batch, L, L, bins) one-hot tensors — on a 300-token receipt they made a forward pass 3–10× slower on CPU
than the transformer itself — so the mini model keeps the absolute 2-D box embeddings only (as
LayoutLMv1 does, which reads receipts well), at hidden 128 × 3 layers."""
SOURCES = ("synthetic", "sroie", "labelstudio")


# --- data --------------------------------------------------------------------------------------------

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


def held_out_f1(model_dir: str | Path, pages: Sequence[LabeledPage], device: Any = "cpu",
                max_length: int = 512, stride: int = 128) -> dict[str, Any]:
    """Word-level F1 of a saved model (bare, without a rules combination) on the held-out pages."""
    ext = LayoutModelExtractor.from_pretrained(model_dir, device=str(device), combine=False,
                                               max_length=max_length, stride=stride, batch_size=16)
    preds = ext.label([p.page for p in pages], [p.image for p in pages])
    return word_f1([p.labels for p in pages], [[w.label for w in row] for row in preds])


def encode_pages(pages: Sequence[LabeledPage], tokenizer: Any, label2id: dict[str, int], max_length: int,
                 stride: int, box_mode: str = "word", hints: bool = False) -> list[Window]:
    """Training windows of `pages`; with `hints`, each word also carries the rules' label of it
    (computed on the page as the model will see it, OCR noise included — `socratext.model.hints`)."""
    windows = []
    for i, p in enumerate(pages):
        tags = bio_tags(p.labels, [w.line_id for w in p.page.words])
        boxes = layout_boxes(p.page, box_mode)
        windows += encode_page([w.text for w in p.page.words], boxes, tokenizer, tags=tags,
                               label2id=label2id, page=i, max_length=max_length, stride=stride,
                               hints=rule_hints(p.page) if hints else None)
    return windows


def batches(windows: Sequence[Window], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar lengths (less padding): shuffle, sort within pools of 16 batches,
    cut, shuffle the batches."""
    idx = list(range(len(windows)))
    rng.shuffle(idx)
    pool = batch_size * 16
    out = []
    for p in range(0, len(idx), pool):
        chunk = sorted(idx[p:p + pool], key=lambda k: len(windows[k]))
        out += [chunk[b:b + batch_size] for b in range(0, len(chunk), batch_size)]
    rng.shuffle(out)
    return out


# --- metrics -----------------------------------------------------------------------------------------

def word_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Word-level precision/recall/F1 per non-O label, and their macro average over labels that occur
    in the gold data (a label nobody annotated would only add a meaningless 0 or 1)."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for g_page, p_page in zip(gold, pred, strict=True):
        for g, p in zip(g_page, p_page, strict=True):
            if g == p:
                if g != OTHER:
                    tp[g] += 1
            else:
                if p != OTHER:
                    fp[p] += 1
                if g != OTHER:
                    fn[g] += 1
    per = {}
    for lab in WORD_LABELS:
        if lab == OTHER or tp[lab] + fn[lab] == 0:
            continue
        prec = tp[lab] / (tp[lab] + fp[lab]) if tp[lab] + fp[lab] else 0.0
        rec = tp[lab] / (tp[lab] + fn[lab])
        per[lab] = {"p": prec, "r": rec, "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
                    "support": tp[lab] + fn[lab]}
    macro = float(np.mean([v["f1"] for v in per.values()])) if per else 0.0
    return {"macro_f1": macro, "per_label": per}


def evaluate_pages(model: Any, tokenizer: Any, pages: Sequence[LabeledPage], max_length: int,
                   stride: int, batch_size: int) -> dict[str, Any]:
    """Word-level F1 of `model` on `pages` through the inference path (windows merged per word)."""
    ext = LayoutModelExtractor(model, tokenizer, device=next(model.parameters()).device,
                               max_length=max_length, stride=stride, batch_size=batch_size)
    preds = ext.label([p.page for p in pages], [p.image for p in pages])
    model.train()
    return word_f1([p.labels for p in pages], [[w.label for w in row] for row in preds])


# --- model -------------------------------------------------------------------------------------------

def fresh_config(arch: str, vocab_size: int, pad_id: int, max_length: int, visual: bool,
                 hints: bool = False) -> Any:
    from socratext.model import layoutlmv2, layoutlmv3

    family, size = arch.split("-")
    n = len(BIO_LABELS)
    if family == "layoutlmv3":
        fn = layoutlmv3.small_layoutlmv3_config if size == "small" else layoutlmv3.tiny_layoutlmv3_config
        extra: dict[str, Any] = {}
        if size == "mini":
            coordinate, shape = layoutlmv3.layout_sizes(MINI["hidden_size"])
            extra = dict(MINI, coordinate_size=coordinate, shape_size=shape)
        cfg = fn(vocab_size, n, pad_token_id=pad_id, max_tokens=max_length, visual=visual, **extra)
    else:
        fn = layoutlmv2.tiny_layoutlmv2_config if size == "tiny" else layoutlmv2.small_layoutlmv2_config
        cfg = fn(vocab_size, n, max_tokens=max_length, pad_token_id=pad_id)
    cfg.id2label = dict(enumerate(BIO_LABELS))
    cfg.label2id = {t: i for i, t in enumerate(BIO_LABELS)}
    return enable_rule_hints(cfg) if hints else cfg


def build_model(spec: str, train_pages: Sequence[LabeledPage], *, vocab_size: int, max_length: int,
                visual: bool, hints: bool = False) -> tuple[Any, Any]:
    """(model, tokenizer): fresh from an architecture name, or loaded from a directory / hub id.
    `hints` makes a fresh model take rule hints; a loaded model keeps what its config says."""
    if spec in ARCHS:
        texts = (" ".join(p.page.words[i].text for i in line) for p in train_pages for line in p.page.lines())
        tokenizer = train_wordpiece(texts, vocab_size=vocab_size)
        cfg = fresh_config(spec, len(tokenizer), tokenizer.pad_token_id, max_length, visual, hints)
        if cfg.model_type == "layoutlmv3":
            cfg.architectures = ["LayoutLMv3LinearForTokenClassification"]
        return model_class(cfg.model_type, cfg.architectures)(cfg), tokenizer
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(spec)
    labels = [cfg.id2label.get(i, cfg.id2label.get(str(i))) for i in range(len(cfg.id2label))]
    same = labels == list(BIO_LABELS)
    kwargs = {} if same else {"num_labels": len(BIO_LABELS), "id2label": dict(enumerate(BIO_LABELS)),
                              "label2id": {t: i for i, t in enumerate(BIO_LABELS)},
                              "ignore_mismatched_sizes": True}
    model = model_class(cfg.model_type, cfg.architectures).from_pretrained(spec, **kwargs)
    return model, load_tokenizer(spec)


# --- object store ------------------------------------------------------------------------------------

class Uploader:
    """Copies run artefacts to the object store: TensorBoard logs to `runs/<run-name>/`, checkpoints to
    `training/<run-name>/model/` (in the configured bucket)."""

    def __init__(self, run_name: str) -> None:
        from socratext.settings import get_settings
        from socratext.storage import ObjectStore

        self.settings = get_settings()
        self.store = ObjectStore(self.settings)
        self.bucket = self.settings.s3_bucket
        self.prefix = f"training/{run_name}"
        self.runs_prefix = f"runs/{run_name}"
        self.store.ensure_bucket(self.bucket)

    def upload_dir(self, local: Path, sub: str, prefix: str | None = None) -> int:
        prefix = prefix or f"{self.prefix}/{sub}"
        n = 0
        for f in sorted(local.rglob("*")):
            if f.is_file():
                ctype = "application/json" if f.suffix == ".json" else (
                    "text/markdown" if f.suffix == ".md" else "application/octet-stream")
                self.store.put_bytes(self.bucket, f"{prefix}/{f.relative_to(local).as_posix()}",
                                     f.read_bytes(), ctype)
                n += 1
        return n


# --- training ----------------------------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--s3", action="store_true", help="upload logs and checkpoints to the object store")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    ap.add_argument("--model", default="layoutlmv3-mini", help=f"{'|'.join(ARCHS)}, a model dir or a hub id")
    ap.add_argument("--data", default="synthetic,sroie,labelstudio")
    ap.add_argument("--n-synth", type=int, default=400, help="synthetic training receipts (seeds 0..n-1)")
    ap.add_argument("--synth-repeat", type=int, default=1, help="repeat synthetic training pages N times")
    ap.add_argument("--sroie-repeat", type=int, default=1, help="repeat SROIE training pages N times")
    ap.add_argument("--synth-cached-only", action="store_true",
                    help="synthetic: only the seeds below --n-synth already in the cache")
    ap.add_argument("--augment", type=int, default=0,
                    help="add N OCR-noise copies of every training page (training/augment.py)")
    ap.add_argument("--synth-gt", action="store_true", help="synthetic: ground-truth words instead of OCR")
    ap.add_argument("--sroie-ocr", action="store_true", help="SROIE: transfer labels onto Tesseract words")
    ap.add_argument("--reconcile-known", action="store_true",
                    help="with --reconcile-labels: compare the rules' and the derived words' values after "
                         "correcting misread names and addresses with the split's known values")
    ap.add_argument("--reconcile-labels", action="store_true",
                    help="SROIE and synthetic: where the rules read a field's true value, take their word "
                         "labels for it (training/datasets/reconcile.py)")
    ap.add_argument("--reconcile-similarity", type=float, default=TEXT_SIMILARITY,
                    help="with --reconcile-labels: the rules' name or address counts as read right when its "
                         "text is this similar to the key's (1.0: exact only; then matched words that read "
                         "the key exactly correct rules that add junk words or cut a line)")
    ap.add_argument("--corrections-repeat", type=repeat_spec, default=1,
                    help="with --reconcile-labels: repeat the training pages where the derived labels "
                         "provably correct the rules N times; 'synthetic=4,sroie=1' per source")
    ap.add_argument("--out", type=Path, default=None, help="checkpoint dir (default runs/<run-name>/model)")
    ap.add_argument("--run-name", default=None)
    ap.add_argument("--log-dir", type=Path, default=REPO_ROOT / "runs",
                    help="TensorBoard logs go to LOG_DIR/<run-name>")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--stride", type=int, default=128)
    ap.add_argument("--vocab-size", type=int, default=4000)
    ap.add_argument("--box-mode", choices=["word", "line"], default="word",
                    help="word boxes, or word x + line y (see socratext.model.encoding.layout_boxes)")
    ap.add_argument("--visual", action="store_true", help="LayoutLMv3: use the image patch embedding")
    ap.add_argument("--rule-hints", action="store_true",
                    help="fresh model: the rules' word labels are an input (socratext/model/hints.py)")
    ap.add_argument("--warmup", type=float, default=0.1, help="warmup share of the steps")
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--val-fraction", type=float, default=VAL_FRACTION)
    ap.add_argument("--patience", type=int, default=3, help="early stopping: evaluations without progress")
    ap.add_argument("--threads", type=int, default=2,
                    help="torch intra-op threads; OpenMP runs at most OMP_THREAD_LIMIT threads, 1 unless "
                         "exported (socratext/__init__.py): export OMP_THREAD_LIMIT=N to train on N cores")
    ap.add_argument("--time-budget-min", type=float, default=0, help="stop cleanly after N minutes (0: none)")
    ap.add_argument("--version", default=None, help="model version written in labels.json")
    ap.add_argument("--fp16-weights", action="store_true", help="save weights in fp16 (half the size)")
    ap.add_argument("--init-from", default=None,
                    help="start from this model's weights and tokenizer: registry:<name>[@<version>] or a "
                         "model dir (replaces --model)")
    ap.add_argument("--reviewed", default=None, help="add reviewed receipts: 's3' or a directory of records")
    ap.add_argument("--reviewed-repeat", type=int, default=3, help="repeat reviewed pages N times")
    ap.add_argument("--held-out", default=None,
                    help="fixed held-out set scored for the new and the current model: DIR, s3:<prefix>, "
                         "labelstudio, sroie, synthetic:N (comma-separated)")
    ap.add_argument("--registry-name", default=None,
                    help="with --s3: publish to the model registry under this name (default: the "
                         "--init-from registry name)")
    return ap.parse_args(argv)


def resolve_init(args: argparse.Namespace) -> dict[str, Any] | None:
    """`--init-from`: point `args.model` at the starting model's directory (a registry version is fetched
    first) and say which model that is; None when training starts from `--model`."""
    spec = args.init_from
    if not spec:
        return None
    from socratext.registry import ModelRegistry, parse_model_ref

    if parse_model_ref(spec) is not None:
        from socratext.settings import get_settings

        mv, path = ModelRegistry.from_settings(get_settings()).fetch_ref(spec)
        args.model = str(path)
        args.registry_name = args.registry_name or mv.name
        return {"dir": path, "ref": f"{mv.name}@{mv.version}"}
    from socratext.model.model_dir import read_labels_meta

    meta = read_labels_meta(spec)
    args.model = spec
    return {"dir": Path(spec), "ref": f"{meta.get('name', Path(spec).name)}@{meta.get('version', '?')}"}


def publish_decision(new_f1: float | None, current_f1: float | None, current: str | None,
                     ) -> tuple[bool, str]:
    """Whether a candidate may become the current version: always when there is none yet; otherwise only
    with a held-out score that is not below the current version's on the same set."""
    if current is None:
        return True, "no current version yet"
    if new_f1 is None or current_f1 is None:
        return False, f"there is a current version ({current}) and no --held-out set to compare with"
    if new_f1 < current_f1:
        return False, f"held-out macro F1 {new_f1:.4f} < {current_f1:.4f} of the current version {current}"
    return True, f"held-out macro F1 {new_f1:.4f} >= {current_f1:.4f} of the current version {current}"


def retrain_gate(args: argparse.Namespace, out_dir: Path, card: dict[str, Any], device: Any,
                 uploader: Uploader | None) -> int:
    """Score the new checkpoint and the current model on the held-out set, record the figures in the model
    card, and (with `--s3` and a registry name) publish the new version as current unless it is worse."""
    from socratext.model.model_dir import CARD_FILE, render_card

    pages = load_held_out(args.held_out) if args.held_out else []
    name = args.registry_name if args.s3 else None
    registry = None
    baseline: tuple[str, Path] | None = None
    if name:
        from socratext.registry import ModelRegistry
        from socratext.settings import get_settings

        registry = ModelRegistry.from_settings(get_settings())
        current = registry.current(name)
        if current is not None:
            baseline = (f"{name}@{current}", registry.fetch(name, current))
    elif args.current:
        baseline = (args.current["ref"], args.current["dir"])
    new = held_out_f1(out_dir, pages, device, args.max_length, args.stride) if pages else None
    base = (held_out_f1(baseline[1], pages, device, args.max_length, args.stride)
            if pages and baseline else None)
    if new is not None:
        labels = sorted(set(new["per_label"]) | set((base or {}).get("per_label", {})))
        print(f"held-out ({len(pages)} pages) word F1: new {new['macro_f1']:.4f}"
              + (f" vs {baseline[0]} {base['macro_f1']:.4f}" if base and baseline else ""))
        for lab in labels:
            a = new["per_label"].get(lab, {}).get("f1", 0.0)
            b = (base or {}).get("per_label", {}).get(lab, {}).get("f1")
            print(f"  {lab:18s} {a:.3f}" + (f"  (current {b:.3f})" if b is not None else ""))
        card["held_out"] = {"set": args.held_out, "pages": len(pages), "macro_f1": round(new["macro_f1"], 4),
                            **{lab: round(m["f1"], 4) for lab, m in new["per_label"].items()}}
        if base is not None and baseline is not None:
            card["held_out"][f"current ({baseline[0]}) macro_f1"] = round(base["macro_f1"], 4)
        (out_dir / CARD_FILE).write_text(render_card(card), encoding="utf-8")
        (out_dir / "heldout_metrics.json").write_text(json.dumps(
            {"set": args.held_out, "new": new, "current": base,
             "current_model": baseline[0] if baseline else None}, indent=2))
        if uploader is not None:
            uploader.upload_dir(out_dir, "model")
    if registry is None or name is None:
        return 0
    version = str(card.get("version"))
    ok, why = publish_decision(new["macro_f1"] if new else None, base["macro_f1"] if base else None,
                               baseline[0] if baseline else None)
    if not ok:
        print(f"not published: {why}")
        return 0
    metrics: dict[str, float] = {"val_macro_f1": float(card.get("validation_macro_f1", 0.0))}
    if new is not None:
        metrics["heldout_macro_f1"] = float(new["macro_f1"])
        metrics["heldout_pages"] = float(len(pages))
        metrics.update({f"heldout_f1_{lab}": float(m["f1"]) for lab, m in new["per_label"].items()})
    if base is not None:
        metrics["current_heldout_macro_f1"] = float(base["macro_f1"])
    mv = registry.publish(name, version, out_dir, metrics, make_current=True)
    print(f"published {mv.name}@{mv.version} as current: {why}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:  # noqa: C901 - one training run, top to bottom
    args = parse_args(argv)
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm
    from transformers import get_linear_schedule_with_warmup

    # never more torch threads than OpenMP may run: a team over OMP_THREAD_LIMIT hangs in libgomp
    limit = os.environ.get("OMP_THREAD_LIMIT", "")
    torch.set_num_threads(max(1, min(args.threads, int(limit)) if limit.isdigit() else args.threads))
    seed_everything(args.seed)
    args.current = resolve_init(args)
    run_name = args.run_name or f"{Path(args.model).name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = args.log_dir / run_name
    out_dir = args.out or run_dir / "model"
    command = "python -m training.train " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    uploader = Uploader(run_name) if args.s3 else None

    sources = [s.strip() for s in args.data.split(",") if s.strip()]
    t_start = time.perf_counter()
    train_pages, val_pages, data_stats = load_data(
        sources, args.n_synth, args.val_fraction, synth_ocr=not args.synth_gt, synth_repeat=args.synth_repeat,
        synth_cached_only=args.synth_cached_only, sroie_ocr=args.sroie_ocr, sroie_repeat=args.sroie_repeat,
        reconcile=args.reconcile_labels, reconcile_known=args.reconcile_known,
        reconcile_similarity=args.reconcile_similarity, corrections_repeat=args.corrections_repeat,
        with_images=args.visual or args.model.startswith("layoutlmv2"))
    if args.reviewed:
        tr, va = split_train_val(load_reviewed(args.reviewed), args.val_fraction)
        counts = Counter(lab for p in tr for lab in p.labels if lab != OTHER)
        data_stats["reviewed"] = {"train": len(tr), "val": len(va), "seconds": 0.0, "labels": dict(counts)}
        train_pages += tr * max(1, args.reviewed_repeat)
        val_pages += va
    if args.augment:
        from training.augment import augment_pages

        noisy = augment_pages(train_pages, args.augment, seed=args.seed)
        train_pages += noisy
        data_stats[f"augment (OCR-noise copies x{args.augment})"] = {"train": len(noisy), "val": 0,
                                                                     "seconds": 0.0}
    if not train_pages:
        print("no training data", file=sys.stderr)
        return 2
    model, tokenizer = build_model(args.model, train_pages, vocab_size=args.vocab_size,
                                   max_length=args.max_length, visual=args.visual, hints=args.rule_hints)
    model.to(device)
    model.config.box_mode = args.box_mode
    label2id = {t: i for i, t in enumerate(BIO_LABELS)}
    windows = encode_pages(train_pages, tokenizer, label2id, args.max_length, args.stride, args.box_mode,
                           hints=uses_rule_hints(model.config))
    image_key, image_fn = image_input(model.config.model_type, uses_images(model.config))
    pixels = [image_fn(p.image) for p in train_pages] if image_key else None  # type: ignore[misc]
    pad_id = tokenizer.pad_token_id or 0
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{len(train_pages)} train pages → {len(windows)} windows; {len(val_pages)} val pages; "
          f"model {n_params / 1e6:.2f} M parameters; device {device}")

    rng = random.Random(args.seed)
    steps_per_epoch = -(-len(windows) // args.batch_size)
    total = steps_per_epoch * args.epochs
    if args.max_steps:
        total = min(total, args.max_steps)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, int(args.warmup * total), total)
    writer = SummaryWriter(str(run_dir))
    writer.add_text("command", command)
    best_f1, best_epoch, bad, step = -float("inf"), -1, 0, 0  # (no val set: -loss, which may be < -1)
    best_card: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    stop = False
    model.train()
    bar = tqdm(total=total, desc="train", file=sys.stderr, dynamic_ncols=True)
    for epoch in range(args.epochs):
        losses = []
        for batch_idx in batches(windows, args.batch_size, rng):
            chunk = [windows[k] for k in batch_idx]
            pix = torch.stack([pixels[w.page] for w in chunk]) if pixels is not None else None
            batch = collate(chunk, pad_id, pix, image_key or "pixel_values")
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{np.mean(losses[-20:]):.3f}")
            if step % 10 == 0:
                writer.add_scalar("train/loss", float(np.mean(losses[-10:])), step)
                writer.add_scalar("train/lr", sched.get_last_lr()[0], step)
            if (args.max_steps and step >= args.max_steps) or (
                    args.time_budget_min and time.perf_counter() - t_start > 60 * args.time_budget_min):
                stop = True
                break
        metrics = (evaluate_pages(model, tokenizer, val_pages, args.max_length, args.stride, 16)
                   if val_pages else {"macro_f1": -float(np.mean(losses)), "per_label": {}})
        f1 = metrics["macro_f1"]
        writer.add_scalar("val/macro_f1", f1, step)
        for lab, m in metrics["per_label"].items():
            writer.add_scalar(f"val_f1/{lab}", m["f1"], step)
        history.append({"epoch": epoch, "step": step, "train_loss": round(float(np.mean(losses)), 4),
                        "val_macro_f1": round(f1, 4)})
        bar.write(f"epoch {epoch}: loss {np.mean(losses):.4f}  val macro F1 {f1:.4f}")
        if f1 > best_f1:
            best_f1, best_epoch, bad = f1, epoch, 0
            card = best_card = model_card(args, command, run_name, data_stats, metrics, history, n_params,
                                          time.perf_counter() - t_start)
            to_save = model
            if args.fp16_weights:
                import copy

                to_save = copy.deepcopy(model).half()
            save_model_dir(to_save, tokenizer, out_dir, card)
            (out_dir / "val_metrics.json").write_text(json.dumps(metrics, indent=2))
        else:
            bad += 1
        writer.flush()
        if uploader is not None:
            uploader.upload_dir(run_dir, "runs", uploader.runs_prefix)
            uploader.upload_dir(out_dir, "model")
        if stop or bad >= args.patience:
            break
    bar.close()
    writer.close()
    print(f"best val macro F1 {best_f1:.4f} (epoch {best_epoch}); model in {out_dir}; "
          f"{(time.perf_counter() - t_start) / 60:.1f} min")
    if uploader is not None:
        uploader.upload_dir(run_dir, "runs", uploader.runs_prefix)
    if args.held_out or args.s3:
        return retrain_gate(args, out_dir, best_card, device, uploader)
    return 0


def model_card(args: argparse.Namespace, command: str, run_name: str, data_stats: dict[str, Any],
               metrics: dict[str, Any], history: list[dict[str, Any]], n_params: int, seconds: float,
               ) -> dict[str, Any]:
    per = {lab: f"F1 {m['f1']:.3f} (P {m['p']:.3f} R {m['r']:.3f}, {m['support']} words)"
           for lab, m in metrics["per_label"].items()}
    return {
        "name": getattr(args, "registry_name", None) or f"socratext-{Path(args.model).name}",
        "version": args.version or run_name,
        "summary": ("Word-level token classifier for receipt fields (labels: socratext.labels, "
                    f"label-set version {LABEL_SET_VERSION}); input = Tesseract words + 0–1000 boxes"
                    + (" + image" if args.visual else ", no image (text + layout)")
                    + (" + the rules extractor's label of every word (rule hints, socratext/model/hints.py)."
                       if getattr(args, "rule_hints", False) else ".")),
        "command": command,
        "seed": args.seed,
        "training_data": {k: f"{v['train']} train / {v['val']} val pages" for k, v in data_stats.items()},
        "data_notes": [
            "synthetic: training.synth.generator seeds 0..n-1, read by Tesseract, labels transferred from "
            "ground-truth boxes" + (" (ground-truth words)" if args.synth_gt else ""),
            "sroie: training split only (sorted stems, first 80 %), labels from key values matched to lines"
            + (", transferred onto Tesseract words" if args.sroie_ocr else " (SROIE's own OCR words)"),
            *(["synthetic and sroie: the rules extractor's word labels of a field replace the derived ones "
               "unless the derived words are proven better (they read the true value, the rules' do not) "
               "(training/datasets/reconcile.py)"
               + (", values compared after correcting misread names and addresses with the split's known "
                  "values (socratext/fields/known.py)" if getattr(args, "reconcile_known", False) else "")]
              if getattr(args, "reconcile_labels", False) else []),
            "labelstudio: first 80 % of tasks by id; code_tva mapped to O",
            "held out, never trained on: SROIE last 20 %, Label Studio last 20 %, synthetic seeds >= 900000",
        ] + ([f"reviewed: labelled receipts from {args.reviewed}, repeated {args.reviewed_repeat}x"]
             if getattr(args, "reviewed", None) else [])
          + ([f"started from {args.current['ref']}"] if getattr(args, "current", None) else []),
        "hyperparameters": {"lr": args.lr, "batch_size": args.batch_size, "epochs": args.epochs,
                            "max_length": args.max_length, "stride": args.stride,
                            "vocab_size": args.vocab_size, "warmup": args.warmup,
                            "weight_decay": args.weight_decay, "synth_repeat": args.synth_repeat,
                            "sroie_repeat": args.sroie_repeat, "augment": args.augment,
                            "box_mode": args.box_mode, "rule_hints": getattr(args, "rule_hints", False),
                            "reconcile_labels": getattr(args, "reconcile_labels", False),
                            "reconcile_known": getattr(args, "reconcile_known", False),
                            "reconcile_similarity": getattr(args, "reconcile_similarity", TEXT_SIMILARITY),
                            "corrections_repeat": getattr(args, "corrections_repeat", 1)},
        "parameters": f"{n_params / 1e6:.2f} M",
        "validation_macro_f1": round(metrics["macro_f1"], 4),
        "validation_per_label": per,
        "history": [json.dumps(h) for h in history],
        "training_minutes": round(seconds / 60, 1),
    }


if __name__ == "__main__":
    raise SystemExit(main())
