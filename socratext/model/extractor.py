"""The layout-model extractor: a saved token-classification model behind the `Extractor` protocol.

`LayoutModelExtractor.from_pretrained(dir_or_hub_id)` loads the model once; `label(pages, images)`
encodes all pages into windows (see `socratext.model.encoding`), runs them in length-sorted micro-batches
(little padding), merges the windows back per word and returns one `WordLabel` per word: the word
label with the highest probability, where a label's probability is P(B-label) + P(I-label) — the BIO
prefix is a training device, field assembly only needs the label.

A model directory is what `socratext.model.model_dir.save_model_dir` writes; a model served with the rules
comes back as a `socratext.model.combine.CombinedExtractor`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoConfig, PreTrainedModel, PreTrainedTokenizerBase

from socratext.document import OcrPage, WordLabel
from socratext.labels import strip_bio
from socratext.model.combine import RULES_FIRST, CombinedExtractor
from socratext.model.encoding import Window, collate, encode_page, image_input, layout_boxes, merge_windows
from socratext.model.hints import hint_ids, rule_hints, rules_id, uses_rule_hints
from socratext.model.model_dir import read_labels_meta
from socratext.model.postprocess import row_consistent
from socratext.model.threads import set_cpu_threads, set_host_threads_for_gpu
from socratext.model.tokenizer import load_tokenizer

log = logging.getLogger(__name__)

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
