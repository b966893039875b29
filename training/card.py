"""The model card of a training run: what it was trained on, how, and what it scored."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from socratext.labels import LABEL_SET_VERSION
from training.datasets.reconcile import TEXT_SIMILARITY


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
