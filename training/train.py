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
vocabulary (`learn_vocab`) and the order of reviewed receipts (`training.data.content_key`) do not
depend on hash order or receipt ids either; TensorBoard logs in `runs/<run-name>/`; the best checkpoint
(save_pretrained + tokenizer + labels.json + model_card.md) in `--out`; `--s3` also uploads the
TensorBoard logs to `runs/<run-name>/` and the checkpoint to `training/<run-name>/model/` in the object store.

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
import json
import os
import random
import shlex
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from socratext.labels import BIO_LABELS, OTHER
from socratext.model.encoding import Window, bio_tags, collate, encode_page, image_input, layout_boxes
from socratext.model.extractor import model_class, uses_images
from socratext.model.hints import enable_rule_hints, rule_hints, uses_rule_hints
from socratext.model.model_dir import save_model_dir
from socratext.model.tokenizer import load_tokenizer, train_wordpiece
from socratext.settings import REPO_ROOT
from training.card import model_card
from training.data import load_data, load_reviewed, repeat_spec
from training.datasets.common import VAL_FRACTION, LabeledPage, split_train_val
from training.datasets.reconcile import TEXT_SIMILARITY
from training.publish import Uploader, resolve_init, retrain_gate
from training.scoring import evaluate_pages

ARCHS = ("layoutlmv3-tiny", "layoutlmv3-mini", "layoutlmv3-small", "layoutlmv2-tiny", "layoutlmv2-small")
MINI = {"hidden_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 512,
        "has_relative_attention_bias": False, "has_spatial_attention_bias": False}
"""`layoutlmv3-mini`, the CPU default: LayoutLMv3's 1-D and 2-D relative attention biases are built from
(batch, L, L, bins) one-hot tensors — on a 300-token receipt they made a forward pass 3–10× slower on CPU
than the transformer itself — so the mini model keeps the absolute 2-D box embeddings only (as
LayoutLMv1 does, which reads receipts well), at hidden 128 × 3 layers."""


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


if __name__ == "__main__":
    raise SystemExit(main())
