"""Tokenizers for the layout models: the checkpoint's own, or a small WordPiece trained on receipts.

A pretrained checkpoint must keep the vocabulary it was trained with, so it loads its own tokenizer.
A model trained from scratch gets a WordPiece vocabulary learned from receipt text instead of a
30–50k general-purpose one: a few thousand pieces cover receipts (shop names, item words, amounts),
keep the embedding matrix — most of a small model's weights — tiny, and are saved beside the model
as a `PreTrainedTokenizerFast`, so `AutoTokenizer.from_pretrained(model_dir)` reloads it.

Choices: lowercase + accent stripping (a label never depends on case or on "é" vs "e", and OCR often
drops or garbles accents, so folding them makes OCR'd and clean text look alike); digit runs are split
from letters (`12x` → `12`, `x`) but kept whole so WordPiece learns frequent chunks (`20`, `##00`)
instead of costing one token per digit — a long receipt then still fits one 512-token window.
"""

from __future__ import annotations

import heapq
import string
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from itertools import pairwise
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

ALPHABET = string.ascii_lowercase + string.digits
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
"""Order fixes the ids: [PAD] = 0 (what the RoBERTa-style position ids of LayoutLMv3 expect as padding)."""
PREFIX = "##"
"""WordPiece's mark of a piece that continues a word."""


def train_wordpiece(texts: Iterable[str], vocab_size: int = 4000, min_frequency: int = 2,
                    ) -> PreTrainedTokenizerFast:
    """Learn a WordPiece vocabulary from `texts` (one receipt line or word per item is fine).

    The same texts always give the same vocabulary (`learn_vocab`): HF's `WordPieceTrainer` breaks ties
    between equally frequent pairs in hash-map order, which changes from one process to the next, so two
    training runs with the same seed and data got different vocabularies and different models.
    """
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=64))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False,
                                                strip_accents=True, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Punctuation(),
        pre_tokenizers.Digits(individual_digits=False),
    ])
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(text)))
    vocab = learn_vocab(counts, vocab_size, min_frequency)
    tok.model = models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]",
                                 max_input_chars_per_word=64)
    tok.decoder = decoders.WordPiece()
    return wrap(tok)


def _join(a: str, b: str) -> str:
    return a + b[len(PREFIX):] if b.startswith(PREFIX) else a + b


def learn_vocab(word_counts: Mapping[str, int], vocab_size: int, min_frequency: int = 2,
                alphabet: str = ALPHABET) -> list[str]:
    """A WordPiece vocabulary, in id order: the special tokens, every character (and, for `alphabet`
    and every character seen inside a word, its `##` continuation form, so that no word made of them
    is ever [UNK]), then the merged pieces, most frequent pair first.

    This is the BPE-style learning of HF's WordPiece trainer — words are split into characters
    (`pain` → `p ##a ##i ##n`) and the most frequent adjacent pair is merged until the vocabulary is
    full or no pair occurs `min_frequency` times — with ties broken by the pair's text instead of
    hash order. Pair counts are kept up to date incrementally (only the words holding the merged pair
    are touched) and the best pair comes from a lazily pruned heap, so a few thousand merges over a
    large corpus take seconds.
    """
    vocab = list(SPECIAL_TOKENS)
    seen = set(vocab)

    def add(token: str) -> None:
        if token not in seen:
            seen.add(token)
            vocab.append(token)

    words = sorted(w for w in word_counts if w)
    freq = [word_counts[w] for w in words]
    symbols = [[w[0], *(PREFIX + c for c in w[1:])] for w in words]
    chars = sorted(set(alphabet).union(*words))
    for c in chars:
        add(c)
    inner = set(alphabet).union(*(w[1:] for w in words))
    for c in chars:
        if c in inner:
            add(PREFIX + c)

    pair_counts: dict[tuple[str, str], int] = defaultdict(int)
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, syms in enumerate(symbols):
        for pair in pairwise(syms):
            pair_counts[pair] += freq[i]
            where[pair].add(i)
    heap = [(-n, pair) for pair, n in pair_counts.items()]
    heapq.heapify(heap)

    while len(vocab) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        if pair_counts.get(pair) != -neg:
            continue  # stale: the pair's count changed since this entry was pushed
        if -neg < min_frequency:
            break
        new = _join(*pair)
        add(new)
        changed: set[tuple[str, str]] = set()
        for i in sorted(where.pop(pair)):
            syms, f = symbols[i], freq[i]
            for p in pairwise(syms):
                pair_counts[p] -= f
                changed.add(p)
            merged: list[str] = []
            k = 0
            while k < len(syms):
                if k + 1 < len(syms) and (syms[k], syms[k + 1]) == pair:
                    merged.append(new)
                    k += 2
                else:
                    merged.append(syms[k])
                    k += 1
            symbols[i] = merged
            for p in pairwise(merged):
                pair_counts[p] += f
                where[p].add(i)
                changed.add(p)
        for p in changed:
            n = pair_counts[p]
            if n <= 0:
                del pair_counts[p]
            else:
                heapq.heappush(heap, (-n, p))
    return vocab


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """A `tokenizers.Tokenizer` as a transformers fast tokenizer with the special tokens declared."""
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=512)


def load_tokenizer(path_or_hub_id: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved with a model (ours or a hub checkpoint's own)."""
    return AutoTokenizer.from_pretrained(str(path_or_hub_id))
