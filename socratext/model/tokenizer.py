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

import itertools
import string
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

ALPHABET = string.ascii_lowercase + string.digits
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
"""Order fixes the ids: [PAD] = 0 (what the RoBERTa-style position ids of LayoutLMv3 expect as padding)."""


def train_wordpiece(texts: Iterable[str], vocab_size: int = 4000, min_frequency: int = 2,
                    ) -> PreTrainedTokenizerFast:
    """Learn a WordPiece vocabulary from `texts` (one receipt line or word per item is fine)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=64))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False,
                                                strip_accents=True, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Punctuation(),
        pre_tokenizers.Digits(individual_digits=False),
    ])
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(SPECIAL_TOKENS),
                                        initial_alphabet=list(ALPHABET))
    # Every letter and digit also as a word-continuation piece ("##h"), so that no word made of them
    # ever becomes [UNK], whatever the training text lacked.
    spelled = [" ".join("a" + c for c in ALPHABET)] * max(1, min_frequency)
    tok.train_from_iterator(itertools.chain(texts, spelled), trainer=trainer)
    return wrap(tok)


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """A `tokenizers.Tokenizer` as a transformers fast tokenizer with the special tokens declared."""
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=512)


def load_tokenizer(path_or_hub_id: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved with a model (ours or a hub checkpoint's own)."""
    return AutoTokenizer.from_pretrained(str(path_or_hub_id))
