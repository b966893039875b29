"""What a training run hands on: run artefacts to the object store, the starting model of a retrain, and
the gate that publishes a new version to the registry only when the fixed held-out set says it is not
worse."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from training.data import load_held_out
from training.scoring import held_out_f1


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
