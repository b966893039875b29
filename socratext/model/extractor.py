"""The layout-model extractor: a saved token-classification model behind the `Extractor` protocol.

`LayoutModelExtractor.from_pretrained(dir_or_hub_id)` loads the model once; `label(pages, images)`
encodes all pages into windows (see `socratext.model.encoding`), runs them in length-sorted micro-batches
(little padding), merges the windows back per word and returns one `WordLabel` per word: the word
label with the highest probability, where a label's probability is P(B-label) + P(I-label) — the BIO
prefix is a training device, field assembly only needs the label.

A model directory is what `save_model_dir` writes: `save_pretrained` weights (safetensors) and config,
the tokenizer, `labels.json` (the BIO label list, the label-set version, the model's name and version)
and `model_card.md`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoConfig, PreTrainedModel, PreTrainedTokenizerBase

from socratext.document import OcrPage, WordLabel
from socratext.labels import FIELDS, LABEL_SET_VERSION, OTHER, strip_bio
from socratext.model.encoding import Window, collate, encode_page, image_input, layout_boxes, merge_windows
from socratext.model.hints import hint_ids, rule_hints, rules_id, uses_rule_hints
from socratext.model.postprocess import row_consistent
from socratext.model.tokenizer import load_tokenizer

log = logging.getLogger(__name__)

LABELS_FILE = "labels.json"
CARD_FILE = "model_card.md"


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def linear_head_layoutlmv3() -> type[PreTrainedModel]:
    """LayoutLMv3 token classifier with a plain linear head.

    transformers' class uses, for 10 labels or more, a dense → tanh → linear head; trained from scratch
    on our 35 BIO tags it saturated and the model collapsed to the label prior (loss flat at the
    prior's entropy for 14 epochs, at lr 3e-4 as at 1e-3), while the same encoder with a linear head
    learnt at once. Saved configs name this class in `architectures`, so loading picks it again."""
    from torch import nn
    from transformers import LayoutLMv3ForTokenClassification

    class LayoutLMv3LinearForTokenClassification(LayoutLMv3ForTokenClassification):
        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.classifier = nn.Linear(config.hidden_size, config.num_labels)
            self.post_init()

    return LayoutLMv3LinearForTokenClassification


def model_class(model_type: str, architectures: list[str] | None = None) -> type[PreTrainedModel]:
    """The token-classification class for a config's `model_type` (and `architectures`). LayoutLMv2
    uses our detectron2-free port unless detectron2 (which transformers' own class needs) is importable."""
    if model_type == "layoutlmv3":
        if architectures and "LayoutLMv3LinearForTokenClassification" in architectures:
            return linear_head_layoutlmv3()
        from transformers import LayoutLMv3ForTokenClassification

        return LayoutLMv3ForTokenClassification
    if model_type == "layoutlmv2":
        try:
            import detectron2  # noqa: F401
            from transformers import LayoutLMv2ForTokenClassification

            return LayoutLMv2ForTokenClassification
        except ImportError:
            from socratext.model.layoutlmv2 import LayoutLMv2FreeForTokenClassification

            return LayoutLMv2FreeForTokenClassification
    raise ValueError(f"unsupported model type {model_type!r} (expected layoutlmv2 or layoutlmv3)")


def uses_images(config: Any) -> bool:
    return config.model_type == "layoutlmv2" or bool(getattr(config, "visual_embed", False))


class LayoutModelExtractor:
    """Extractor backed by a LayoutLMv2/v3 token classifier."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, name: str = "layoutlm",
                 version: str = "0", device: str | torch.device = "cpu", max_length: int = 512,
                 stride: int = 128, batch_size: int = 8, row_smoothing: bool | None = None) -> None:
        self.model = model.eval()
        # socratext.model.postprocess; a model's config may turn it off (`row_smoothing: false`, set for
        # models with rule hints: their hints already carry the rules' rows, and filling rows to their
        # ends added the OCR junk ("|", "~~") the rules leave out of an address)
        if row_smoothing is None:
            row_smoothing = bool(getattr(model.config, "row_smoothing", True))
        self.row_smoothing = row_smoothing
        self.tokenizer = tokenizer
        self.name = name
        self.version = version
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model.to(self.device)
        if self.device.type == "cuda":  # fixed image size: conv shapes vary only with the batch size
            torch.backends.cudnn.benchmark = True
        self.max_length = min(max_length, int(getattr(model.config, "max_position_embeddings", 514)) - 2)
        self.stride = stride
        self.batch_size = batch_size
        id2label = {int(k): v for k, v in model.config.id2label.items()}
        self.tags = [id2label[i] for i in range(len(id2label))]
        self.word_labels = list(dict.fromkeys(strip_bio(t) for t in self.tags))
        # tag index → word-label index, to sum P(B-x) and P(I-x)
        fold = torch.zeros(len(self.tags), len(self.word_labels))
        for i, t in enumerate(self.tags):
            fold[i, self.word_labels.index(strip_bio(t))] = 1.0
        self._fold = fold.to(self.device)  # softmax and fold run where the logits are: less to copy back
        self._blank: torch.Tensor | None = None  # the image of a page without one, made once
        self.box_mode = str(getattr(model.config, "box_mode", "word"))
        self.rule_hints = uses_rule_hints(model.config)  # the rules' labels are an input (model.hints)
        if self.rule_hints and model.config.rule_hints != rules_id():
            log.warning("model trained with hints from %s, fed hints from %s: the rules changed since it was "
                        "trained; retrain it (training.train --rule-hints) to learn from the new ones",
                        model.config.rule_hints, rules_id())
        self.image_key, self._image_fn = image_input(model.config.model_type, uses_images(model.config))
        self.uses_images = self.image_key is not None
        self.takes_rule_labels = True  # used as its rule hints when it has them (`label`)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else getattr(model.config, "pad_token_id", 0) or 0)

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | Path, device: str = "auto", combine: bool | None = None,
                        **kwargs: Any) -> LayoutModelExtractor | CombinedExtractor:
        """Load a model directory (or hub id): AutoConfig decides the architecture.

        A model directory whose `labels.json` has a `combine_with_rules` entry was measured to be best
        together with the rules extractor (see its model card); it then comes back wrapped in a
        `CombinedExtractor` with the recorded settings. `combine=False` returns the bare model,
        `combine=True` forces the combination with default settings."""
        src = str(path_or_hub_id)
        meta = read_labels_meta(src)
        spec = meta.get("combine_with_rules")
        if combine is None:
            combine = bool(spec)
        if combine:
            from socratext.extractors.rules import RulesExtractor

            spec = spec if isinstance(spec, dict) else {}
            bare = cls.from_pretrained(src, device=device, combine=False, **kwargs)
            return CombinedExtractor(bare, RulesExtractor(), threshold=float(spec.get("threshold", 0.5)),
                                     rules_first=tuple(spec.get("rules_first", RULES_FIRST)),
                                     fill_threshold=float(spec.get("fill_threshold", 0.9)),
                                     trim_fields=tuple(spec.get("trim_fields", ())),
                                     trim_threshold=(None if spec.get("trim_threshold") is None
                                                     else float(spec["trim_threshold"])))
        config = AutoConfig.from_pretrained(src)
        model = model_class(config.model_type, config.architectures).from_pretrained(src)
        tokenizer = load_tokenizer(src)
        if torch.device(resolve_device(device)).type == "cpu":
            # fp16-saved weights: CPU kernels want fp32
            model = model.float()
            set_cpu_threads()
        else:
            set_host_threads_for_gpu()
        return cls(model, tokenizer, name=meta.get("name", config.model_type),
                   version=str(meta.get("version", "0")), device=device, **kwargs)

    # --- Extractor protocol ---
    def label(self, pages: list[OcrPage], images: list[Image.Image | None] | None = None,
              rule_labels: Sequence[Sequence[WordLabel] | None] | None = None) -> list[list[WordLabel]]:
        """`rule_labels`: the rules' labels of these pages when the caller already has them (a
        `CombinedExtractor` does, the OCR event may), so a model with rule hints does not run the rules a
        second time; None for a page without them."""
        probs = self.word_probabilities(pages, images, rule_labels)
        out = []
        for page, p in zip(pages, probs, strict=True):
            if self.row_smoothing:
                idx = row_consistent(page, p, self.word_labels)
            else:
                idx = p.argmax(axis=1) if len(p) else np.zeros(0, dtype=np.int64)
            # one numpy gather, then Python floats: indexing `p[i, k]` word by word cost more host time
            # than the merge and the row smoothing together
            best = p[np.arange(len(idx)), idx].tolist() if len(idx) else []
            out.append([WordLabel(self.word_labels[k], pr) for k, pr in zip(idx.tolist(), best, strict=True)])
        return out

    def word_probabilities(self, pages: Sequence[OcrPage], images: Sequence[Image.Image | None] | None = None,
                           rule_labels: Sequence[Sequence[WordLabel] | None] | None = None,
                           ) -> list[np.ndarray]:
        """(n_words, n_word_labels) probabilities per page, columns in `self.word_labels` order."""
        windows: list[Window] = []
        for i, page in enumerate(pages):
            hints = None
            if self.rule_hints:
                given = rule_labels[i] if rule_labels is not None else None
                hints = rule_hints(page) if given is None else hint_ids([w.label for w in given])
            windows.extend(encode_page([w.text for w in page.words], layout_boxes(page, self.box_mode),
                                       self.tokenizer, page=i, max_length=self.max_length, stride=self.stride,
                                       hints=hints))
        pixels: dict[int, torch.Tensor] = {}
        if self.image_key is not None:
            for i in range(len(pages)):
                img = images[i] if images is not None and i < len(images) else None
                if img is not None:
                    pixels[i] = self._image_fn(img)  # type: ignore[operator]
        order = sorted(range(len(windows)), key=lambda k: len(windows[k]))
        scores: list[np.ndarray | None] = [None] * len(windows)
        with torch.inference_mode():
            for b in range(0, len(order), self.batch_size):
                chunk = [windows[k] for k in order[b:b + self.batch_size]]
                batch = collate(chunk, self.pad_id)
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                if self.image_key is not None:
                    batch[self.image_key] = self._pixels([pixels.get(w.page) for w in chunk])
                with _autocast(self.device):
                    logits = self.model(**batch).logits
                word_p = (torch.softmax(logits.float(), dim=-1) @ self._fold).cpu().numpy()
                for j, k in enumerate(order[b:b + self.batch_size]):
                    scores[k] = word_p[j, : len(windows[k])]
        by_page: dict[int, list[int]] = {}
        for k, w in enumerate(windows):
            by_page.setdefault(w.page, []).append(k)
        out = []
        for i, page in enumerate(pages):
            ks = by_page.get(i, [])
            if not page.words:
                out.append(np.zeros((0, len(self.word_labels)), dtype=np.float32))
                continue
            out.append(merge_windows([windows[k] for k in ks], [scores[k] for k in ks],  # type: ignore[misc]
                                     len(page.words)))
        return out

    def _pixels(self, images: list[torch.Tensor | None]) -> torch.Tensor:
        """The batch's image tensor on the device. Pages without an image (the streaming extract stage
        receives OCR words only) share one blank sheet made once and expanded without a copy: measured on
        an H200 (bench/bench_gpu.py), making, stacking and copying 600 KB of blank pixels per page cost
        the LayoutLMv2-base stage more host time than the model's whole forward pass."""
        if self._blank is None:
            self._blank = self._image_fn(None).to(self.device)  # type: ignore[operator]
        if all(img is None for img in images):
            return self._blank.expand(len(images), *self._blank.shape)
        return torch.stack([self._blank if img is None else img.to(self.device, non_blocking=True)
                            for img in images])


RULES_FIRST = FIELDS
"""By default the rules win on every output field they find: measured end to end on held-out SROIE and
synthetic receipts, the rules (pattern checks: valid dates, SIRET/VAT checksums, TOTAL keywords) were
more precise than the small CPU model on each field they fire on, while the model recovers fields the
rules miss (VAT total, totals without a keyword, payment method, shop names without legal suffix)."""


class CombinedExtractor:
    """Model and rules together, each where it is strong.

    - For the `rules_first` fields, if the rules label any word of the page with the field, the field's
      words are exactly the rules' (the model's words for that field become "O"); otherwise the model's
      words whose probability reaches `fill_threshold`. Measured end to end with the default model
      1.2.0 (held-out SROIE and synthetic): without this gate its fills where the rules are silent were
      mostly wrong (SROIE micro F1 0.588 against the rules' 0.589); at 0.9 (set before measuring) it
      fills nothing wrong there and the combination equals the rules on SROIE (0.602 = 0.602).
    - Elsewhere the model decides, except that a word whose model probability is below `threshold` takes
      the rules' label when the rules give it one (rules are precise on patterns but blind to layout;
      the model is the opposite).
    - For the `trim_fields` (by default none), the model may trim the rules' field at its ends: see
      `trimmed_ends`. Names and addresses are the fields the rules cannot check against a pattern (no
      checksum, no calendar, no TOTAL keyword), so a stray word the rules take along — a logo read as
      "is)", "FF", a street name taken for a shop name — is where the model's layout knowledge is worth
      more than the rules' word.
    """

    def __init__(self, model: Any, rules: Any, threshold: float = 0.6,
                 rules_first: tuple[str, ...] = RULES_FIRST, fill_threshold: float = 0.9,
                 trim_fields: tuple[str, ...] = (), trim_threshold: float | None = None) -> None:
        self.model = model
        self.rules = rules
        self.threshold = threshold
        self.fill_threshold = fill_threshold
        self.rules_first = frozenset(rules_first)
        self.trim_fields = tuple(trim_fields)
        # as sure to take a word out of a rules field as to fill a field the rules left empty
        self.trim_threshold = fill_threshold if trim_threshold is None else trim_threshold
        self.name = f"{model.name}+{rules.name}"
        self.uses_images = bool(getattr(model, "uses_images", True) or getattr(rules, "uses_images", True))
        self.takes_rule_labels = True
        self.version = f"{model.version}+{getattr(rules, 'version', '0')}"
        # a model with rule hints from these very rules (the version it was trained with, labelling with
        # today's date as `model.hints.rule_hints` does) takes their labels from here instead of labelling
        # every page again
        from socratext.extractors.rules import RulesExtractor

        config = getattr(getattr(model, "model", None), "config", None)
        self._hints_from_rules = (isinstance(rules, RulesExtractor) and rules.today is None
                                  and getattr(config, "rule_hints", None) == rules_id())

    def label(self, pages: list[OcrPage], images: list[Image.Image | None] | None = None,
              rule_labels: Sequence[Sequence[WordLabel] | None] | None = None) -> list[list[WordLabel]]:
        """`rule_labels`: the pages' labels by these rules when the OCR stage already computed them
        (None, or None for a page, where not); see `RulesExtractor.label`."""
        if rule_labels is not None and getattr(self.rules, "takes_rule_labels", False):
            r_all = self.rules.label(pages, images, rule_labels=rule_labels)
        else:
            r_all = self.rules.label(pages, images)
        if self._hints_from_rules:  # the model's hints are these very labels: run the rules once
            m_all = self.model.label(pages, images, rule_labels=r_all)
        else:
            m_all = self.model.label(pages, images)
        return [self.merge(m, r) for m, r in zip(m_all, r_all, strict=True)]

    def merge(self, m_page: list[WordLabel], r_page: list[WordLabel]) -> list[WordLabel]:
        """One page: the model's and the rules' labels → the combined labels (pure)."""
        found = {r.label for r in r_page} & self.rules_first
        trimmed = trimmed_ends(m_page, r_page, self.trim_fields, self.trim_threshold)
        row = []
        for i, (m, r) in enumerate(zip(m_page, r_page, strict=True)):
            if i in trimmed:
                row.append(WordLabel(OTHER, m.probability))
            elif r.label in found:
                row.append(r)
            elif m.label in found:
                row.append(WordLabel(OTHER, m.probability))
            elif m.label in self.rules_first and m.probability < self.fill_threshold:
                row.append(r if r.label != OTHER else WordLabel(OTHER, m.probability))
            elif m.probability < self.threshold and r.label != OTHER:
                row.append(r)
            else:
                row.append(m)
        return row


def trimmed_ends(m_page: Sequence[WordLabel], r_page: Sequence[WordLabel], fields: Sequence[str],
                 threshold: float) -> set[int]:
    """Indices of the rules' words of each of `fields` that the model takes out (pure).

    In reading order, the field's leading words are dropped while the model calls them "other" with
    probability at least `threshold`, then its trailing words likewise; a name or an address is printed
    as one run of text, so the model trims its ends but never punches a hole in the middle (the words
    it is least sure of there are OCR misreads of real name words, "GARDENTA BAKEBIES"). Every word may
    go: the rules' "name" was then a stray line, and no name beats a wrong one."""
    def sure(i: int) -> bool:
        return m_page[i].label == OTHER and m_page[i].probability >= threshold

    out: set[int] = set()
    for f in fields:
        idx = [i for i, r in enumerate(r_page) if r.label == f]
        lo = 0
        while lo < len(idx) and sure(idx[lo]):
            lo += 1
        hi = len(idx)
        while hi > lo and sure(idx[hi - 1]):
            hi -= 1
        out.update(idx[:lo])
        out.update(idx[hi:])
    return out


class _autocast:
    """bf16 (or fp16) autocast on CUDA, nothing on CPU (fp32 is faster than emulated bf16 there)."""

    def __init__(self, device: torch.device) -> None:
        self.ctx = None
        if device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            self.ctx = torch.autocast("cuda", dtype=dtype)

    def __enter__(self) -> None:
        if self.ctx is not None:
            self.ctx.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self.ctx is not None:
            self.ctx.__exit__(*exc)


def set_cpu_threads() -> None:
    """Intra-op threads = available cores (capped at 8): more only adds contention on shared hosts.
    An explicit `OMP_NUM_THREADS`/`torch.set_num_threads` by the caller wins."""
    if os.environ.get("OMP_NUM_THREADS"):
        return
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    if torch.get_num_threads() > min(cores, 8):
        torch.set_num_threads(max(1, min(cores, 8)))


def set_host_threads_for_gpu() -> None:
    """With the model on a GPU, torch's host-side work (collating, copies) is small and needs no OpenMP
    team: one intra-op thread. Several extraction workers share a GPU (one per partition), and each
    would otherwise start one spinning thread per core (16 workers × 16 threads on a 16-core host).
    An explicit `OMP_NUM_THREADS` wins."""
    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(1)


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
