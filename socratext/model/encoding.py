"""Words → model inputs and back: subword tokens, boxes, BIO labels, sliding windows, image tensors.

The OCR speaks in words, the models in subword tokens of at most 512 positions. This module is the
only place that translates between the two, so training and inference cannot disagree:

- every subword carries its word's 0–1000 box (LayoutLM convention);
- a word's label sits on its FIRST subword, the others get -100 (ignored by the loss), and at inference
  the first subword's prediction is the word's;
- a receipt longer than one window is cut into overlapping windows (cut at word starts), and each word
  takes its prediction from the window where it is most central — the one with the most context on
  both sides;
- images are prepared as each architecture's own processor would (LayoutLMv2: 224×224 BGR 0–255;
  LayoutLMv3: 224×224 RGB scaled to [-1, 1], the processor's 0.5/0.5 mean/std).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from transformers import PreTrainedTokenizerBase

from socratext.document import OcrPage
from socratext.labels import OTHER

IGNORE = -100
CLS_BOX = (0, 0, 0, 0)
SEP_BOX = (1000, 1000, 1000, 1000)
IMAGE_SIZE = 224


BOX_MODES = ("word", "line")


def layout_boxes(page: OcrPage, mode: str = "word") -> list[tuple[int, int, int, int]]:
    """The 0–1000 boxes the model sees for a page's words.

    "word": each word's own box. "line": the word's own x extent but its *line's* y extent, so that all
    words of a text line share exactly the same y0/y1 — a small text+layout model then links an amount
    to the keyword on its line ("TOTAL … 12,50") by equal y embeddings instead of having to learn
    "almost equal" (LayoutLMv3 feeds whole-segment boxes for the same reason). Saved models record the
    mode in their config (`box_mode`)."""
    boxes = page.norm_boxes()
    if mode == "word":
        return boxes
    if mode != "line":
        raise ValueError(f"unknown box mode {mode!r}; one of {BOX_MODES}")
    out = list(boxes)
    for line in page.lines():
        y0 = min(boxes[i][1] for i in line)
        y1 = max(boxes[i][3] for i in line)
        for i in line:
            out[i] = (boxes[i][0], y0, boxes[i][2], y1)
    return out


def bio_tags(labels: Sequence[str], line_ids: Sequence[int] | None = None) -> list[str]:
    """Word labels → BIO tags. A span is a run of consecutive words with the same label on the same line,
    so every item line starts its own `B-item_name` and a two-line address is two spans (field
    assembly joins spans of one field anyway; splitting on lines is what separates repeated items)."""
    tags: list[str] = []
    prev, prev_line = OTHER, None
    for i, lab in enumerate(labels):
        line = line_ids[i] if line_ids is not None else 0
        if lab == OTHER:
            tags.append(OTHER)
        elif lab == prev and line == prev_line:
            tags.append(f"I-{lab}")
        else:
            tags.append(f"B-{lab}")
        prev, prev_line = lab, line
    return tags


def tokenize_words(tokenizer: PreTrainedTokenizerBase, words: Sequence[str]) -> list[list[int]]:
    """Subword ids of each word (never empty: a word the vocabulary cannot spell becomes [UNK])."""
    out: list[list[int]] = [[] for _ in words]
    if not words:
        return out
    backend = tokenizer.backend_tokenizer  # fast tokenizers only: they report word ids
    # Changing these borrows the Rust tokenizer mutably, which fails ("Already borrowed") while another
    # thread encodes with it (extraction agents share one model): change them once, only when set.
    if backend.truncation is not None:
        backend.no_truncation()
    if backend.padding is not None:
        backend.no_padding()
    enc = backend.encode(list(words), is_pretokenized=True, add_special_tokens=False)
    for tid, wid in zip(enc.ids, enc.word_ids, strict=True):
        if wid is not None:
            out[wid].append(tid)
    unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else 0
    return [ids or [unk] for ids in out]


@dataclass
class Window:
    """One model input: ≤ max_length tokens of one page, with where each word's first subword sits."""

    input_ids: list[int]
    bbox: list[tuple[int, int, int, int]]
    labels: list[int] | None
    page: int
    token_type_ids: list[int] | None = None  # rule hints (socratext.model.hints), one per token
    word_pos: dict[int, int] = field(default_factory=dict)  # word index → token position (first subword)
    span: tuple[int, int] = (0, 0)  # [start, end) in the page's token sequence (without specials)

    def __len__(self) -> int:
        return len(self.input_ids)

    def centrality(self, word: int) -> int:
        """How many tokens of context the word's first subword has on its poorer side in this window."""
        pos = self.word_pos[word] - 1  # position within the body (after [CLS])
        return min(pos, (self.span[1] - self.span[0]) - 1 - pos)


def window_starts(word_starts: Sequence[int], n_tokens: int, body: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) token ranges of the windows: ≤ `body` tokens each, cut at word starts where possible,
    consecutive windows overlapping by about `stride` tokens."""
    if n_tokens <= body:
        return [(0, n_tokens)]
    starts = sorted(set(word_starts))
    spans = []
    s = 0
    while True:
        end = min(s + body, n_tokens)
        if end < n_tokens:
            cut = max((w for w in starts if s < w <= end), default=end)
            end = cut if cut > s else end
        spans.append((s, end))
        if end >= n_tokens:
            return spans
        target = max(end - stride, s + 1)
        nxt = min((w for w in starts if target <= w < end), default=None)
        s = nxt if nxt is not None and nxt > s else target


def encode_page(words: Sequence[str], boxes: Sequence[Sequence[int]], tokenizer: PreTrainedTokenizerBase, *,
                tags: Sequence[str] | None = None, label2id: dict[str, int] | None = None, page: int = 0,
                max_length: int = 512, stride: int = 128, hints: Sequence[int] | None = None) -> list[Window]:
    """Encode one page's words (and, for training, their BIO tags) into one or more windows.

    `hints` (one token type per word, `socratext.model.hints`) go on every subword of their word; the
    special tokens get 0."""
    if hints is not None and len(hints) != len(words):
        raise ValueError(f"{len(hints)} hints for {len(words)} words")
    if max_length < 8:
        raise ValueError("max_length must leave room for [CLS], [SEP] and some words")
    body = max_length - 2
    stride = max(0, min(stride, body // 2))
    pieces = tokenize_words(tokenizer, words)
    ids: list[int] = []
    tok_word: list[int] = []
    first: list[bool] = []
    word_start: list[int] = []
    for w, p in enumerate(pieces):
        word_start.append(len(ids))
        ids.extend(p)
        tok_word.extend([w] * len(p))
        first.extend([True] + [False] * (len(p) - 1))
    cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    word_labels = None
    if tags is not None:
        if label2id is None:
            raise ValueError("tags need label2id")
        word_labels = [label2id[t] for t in tags]

    windows = []
    for s, e in window_starts(word_start, len(ids), body, stride):
        w_ids = [cls_id, *ids[s:e], sep_id]
        w_box = [CLS_BOX, *(tuple(boxes[tok_word[i]]) for i in range(s, e)), SEP_BOX]
        labels = None
        if word_labels is not None:
            body_labels = [word_labels[tok_word[i]] if first[i] else IGNORE for i in range(s, e)]
            labels = [IGNORE, *body_labels, IGNORE]
        pos = {tok_word[i]: i - s + 1 for i in range(s, e) if first[i]}
        types = [0, *(int(hints[tok_word[i]]) for i in range(s, e)), 0] if hints is not None else None
        windows.append(Window(input_ids=w_ids, bbox=w_box, labels=labels, page=page, word_pos=pos,
                              span=(s, e), token_type_ids=types))
    if not windows:  # a page without words still gives one (empty) window, so batching stays uniform
        windows.append(Window(input_ids=[cls_id, sep_id], bbox=[CLS_BOX, SEP_BOX],
                              labels=[IGNORE, IGNORE] if tags is not None else None, page=page,
                              token_type_ids=[0, 0] if hints is not None else None))
    return windows


def merge_windows(windows: Sequence[Window], word_scores: Sequence[np.ndarray], n_words: int) -> np.ndarray:
    """Per-word rows of scores (e.g. probabilities) from per-window token rows: each word's row comes from
    its first subword in the window where it is most central. `word_scores[k]` is (len(window k), C)."""
    if not windows:
        raise ValueError("no windows")
    n_cls = word_scores[0].shape[-1]
    out = np.zeros((n_words, n_cls), dtype=np.float32)
    best = np.full(n_words, -1, dtype=np.int64)
    for win, scores in zip(windows, word_scores, strict=True):
        for w, pos in win.word_pos.items():
            c = win.centrality(w)
            if c > best[w]:
                best[w] = c
                out[w] = scores[pos]
    missing = np.flatnonzero(best < 0)
    if missing.size:
        raise ValueError(f"{missing.size} words had no window (first: {int(missing[0])})")
    return out


def collate(windows: Sequence[Window], pad_id: int, pixel: torch.Tensor | None = None,
            image_key: str = "pixel_values") -> dict[str, torch.Tensor]:
    """Pad a list of windows to the longest one: the tensors a token-classification forward takes.
    `pixel` (one image tensor per window, stacked) goes under `image_key` ("pixel_values" for v3,
    "image" for v2)."""
    n = max(len(w) for w in windows)
    b = len(windows)
    input_ids = torch.full((b, n), pad_id, dtype=torch.long)
    bbox = torch.zeros((b, n, 4), dtype=torch.long)
    mask = torch.zeros((b, n), dtype=torch.long)
    has_labels = all(w.labels is not None for w in windows)
    labels = torch.full((b, n), IGNORE, dtype=torch.long) if has_labels else None
    has_types = [w.token_type_ids is not None for w in windows]
    if any(has_types) and not all(has_types):
        raise ValueError("some windows have rule hints and some do not")
    types = torch.zeros((b, n), dtype=torch.long) if all(has_types) else None
    for i, w in enumerate(windows):
        k = len(w)
        input_ids[i, :k] = torch.tensor(w.input_ids, dtype=torch.long)
        bbox[i, :k] = torch.tensor(w.bbox, dtype=torch.long)
        mask[i, :k] = 1
        if labels is not None:
            labels[i, :k] = torch.tensor(w.labels, dtype=torch.long)
        if types is not None:
            types[i, :k] = torch.tensor(w.token_type_ids, dtype=torch.long)
    batch = {"input_ids": input_ids, "bbox": bbox, "attention_mask": mask}
    if labels is not None:
        batch["labels"] = labels
    if types is not None:
        batch["token_type_ids"] = types
    if pixel is not None:
        batch[image_key] = pixel
    return batch


def _resized_rgb(img: Image.Image | None) -> np.ndarray:
    if img is None:  # no image (e.g. Label Studio exports): a blank sheet of paper
        return np.full((IMAGE_SIZE, IMAGE_SIZE, 3), 255, dtype=np.float32)
    img = img.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def image_tensor_v2(img: Image.Image | None) -> torch.Tensor:
    """LayoutLMv2's `image`: (3, 224, 224) float, BGR channel order, values 0–255 (its detectron2
    backbone normalises internally with its own pixel mean/std)."""
    arr = _resized_rgb(img)[:, :, ::-1].copy()
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def pixel_values_v3(img: Image.Image | None) -> torch.Tensor:
    """LayoutLMv3's `pixel_values`: (3, 224, 224) RGB rescaled to [0, 1] then normalised with mean = std =
    0.5, as `LayoutLMv3ImageProcessor` does by default."""
    arr = (_resized_rgb(img) / 255.0 - 0.5) / 0.5
    return torch.from_numpy(arr.astype(np.float32)).permute(2, 0, 1).contiguous()


def image_input(model_type: str, visual: bool) -> tuple[str | None, object]:
    """Which forward argument carries the image for an architecture, and the function that makes it;
    (None, None) for a text+layout-only model."""
    if model_type == "layoutlmv2":
        return "image", image_tensor_v2
    if model_type == "layoutlmv3" and visual:
        return "pixel_values", pixel_values_v3
    return None, None
