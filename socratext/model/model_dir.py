"""A model directory on disk: `save_pretrained` weights and config, the tokenizer, `labels.json` (the BIO
label list, the label-set version, the model's name and version, how to serve it) and `model_card.md`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from socratext.labels import LABEL_SET_VERSION

LABELS_FILE = "labels.json"
CARD_FILE = "model_card.md"


def read_labels_meta(path: str | Path) -> dict[str, Any]:
    """`labels.json` of a local model directory ({} for a hub id or a directory without one)."""
    f = Path(path) / LABELS_FILE
    if f.is_file():
        return json.loads(f.read_text(encoding="utf-8"))
    return {}


def save_model_dir(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: str | Path,
                   card: dict[str, Any], combine_with_rules: dict[str, Any] | None = None) -> Path:
    """Write a complete model directory: weights + config, tokenizer, labels.json and model_card.md.
    `card` needs `name` and `version`; every other key goes into the card as a section.
    `combine_with_rules` ({"threshold": .., "rules_first": [..]}) makes `from_pretrained` return the
    model combined with the rules extractor."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    id2label = {int(k): v for k, v in model.config.id2label.items()}
    meta = {
        "name": card.get("name", model.config.model_type),
        "version": str(card.get("version", "0")),
        "label_set_version": LABEL_SET_VERSION,
        "labels": [id2label[i] for i in range(len(id2label))],
        "model_type": model.config.model_type,
    }
    if combine_with_rules:
        meta["combine_with_rules"] = combine_with_rules
    (out / LABELS_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / CARD_FILE).write_text(render_card(card), encoding="utf-8")
    return out


def render_card(card: dict[str, Any]) -> str:
    lines = [f"# {card.get('name', 'model')} {card.get('version', '')}".rstrip(), ""]
    if card.get("summary"):
        lines += [str(card["summary"]), ""]
    for key, value in card.items():
        if key in ("name", "version", "summary"):
            continue
        lines.append(f"## {key.replace('_', ' ').capitalize()}")
        lines.append("")
        if isinstance(value, dict):
            lines += [f"- {k}: {v}" for k, v in value.items()]
        elif isinstance(value, list | tuple):
            lines += [f"- {v}" for v in value]
        else:
            lines.append(f"```\n{value}\n```" if "\n" in str(value) or key == "command" else str(value))
        lines.append("")
    return "\n".join(lines)
