"""Word ↔ token encoding: BIO tags, first-subword labels, sliding windows and their merge, image tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from socratext.labels import BIO_LABELS
from socratext.model.encoding import (
    IGNORE,
    bio_tags,
    collate,
    encode_page,
    image_tensor_v2,
    merge_windows,
    pixel_values_v3,
    tokenize_words,
    window_starts,
)
from socratext.model.tokenizer import train_wordpiece

LABEL2ID = {t: i for i, t in enumerate(BIO_LABELS)}


@pytest.fixture(scope="module")
def tok():
    corpus = ["total ttc 12,50 eur", "carrefour market paris", "tva 20,00 % 2,08", "merci de votre visite",
              "date 12/03/2024 14:05", "baguette tradition 1,20"] * 20
    return train_wordpiece(corpus, vocab_size=120, min_frequency=1)


def test_bio_tags_spans_break_on_label_and_line():
    labels = ["merchant_name", "merchant_name", "O", "item_name", "item_name", "item_name", "total"]
    lines = [0, 0, 1, 2, 2, 3, 4]
    assert bio_tags(labels, lines) == ["B-merchant_name", "I-merchant_name", "O", "B-item_name",
                                       "I-item_name", "B-item_name", "B-total"]


def test_tokenizer_lowercases_folds_accents_and_splits_digits(tok):
    pieces = tok.backend_tokenizer.encode(["TÉLÉPHONE12"], is_pretokenized=True, add_special_tokens=False)
    text = "".join(p.replace("##", "") for p in pieces.tokens)
    assert text == "telephone12"
    assert any(p.startswith("1") or p.startswith("##1") for p in pieces.tokens)
    assert tok.pad_token_id == 0


def test_first_subword_carries_the_label_others_ignored(tok):
    words = ["Supercalifragilistic", "12,50", "EUR"]
    pieces = tokenize_words(tok, words)
    assert len(pieces[0]) > 1, "the long word must split into several subwords for this test"
    tags = ["B-item_name", "B-total", "B-currency"]
    (win,) = encode_page(words, [(0, 0, 10, 10), (20, 0, 30, 10), (40, 0, 50, 10)], tok, tags=tags,
                         label2id=LABEL2ID)
    n0 = len(pieces[0])
    assert win.input_ids[0] == tok.cls_token_id and win.input_ids[-1] == tok.sep_token_id
    assert win.labels[0] == IGNORE and win.labels[-1] == IGNORE
    assert win.labels[1] == LABEL2ID["B-item_name"]
    assert win.labels[2:1 + n0] == [IGNORE] * (n0 - 1)
    assert win.labels[1 + n0] == LABEL2ID["B-total"]
    # every subword carries its word's box
    assert win.bbox[1:1 + n0] == [(0, 0, 10, 10)] * n0
    assert win.word_pos == {0: 1, 1: 1 + n0, 2: 1 + n0 + len(pieces[1])}


def test_empty_word_becomes_unk(tok):
    assert tokenize_words(tok, ["", "total"])[0] == [tok.unk_token_id]


def test_window_starts_cover_everything_with_overlap():
    starts = list(range(0, 1000, 2))  # every word two tokens long
    spans = window_starts(starts, 1000, body=126, stride=32)
    assert spans[0][0] == 0 and spans[-1][1] == 1000
    for (_s0, e0), (s1, e1) in zip(spans, spans[1:], strict=False):
        assert s1 < e0, "consecutive windows overlap"
        assert e0 - s1 >= 30
        assert s1 % 2 == 0 and e0 % 2 == 0, "windows are cut at word starts"
        assert e1 - s1 <= 126
    assert window_starts(starts, 100, body=126, stride=32) == [(0, 100)]


def test_long_page_gives_several_windows_and_one_prediction_per_word(tok):
    n = 700
    words = [f"baguette{i % 7}" if i % 3 else "12,50" for i in range(n)]
    boxes = [(10, i, 50, i + 1) for i in range(n)]
    windows = encode_page(words, boxes, tok, max_length=512, stride=128)
    assert len(windows) >= 2
    assert all(len(w) <= 512 for w in windows)
    covered = set()
    for w in windows:
        covered |= set(w.word_pos)
    assert covered == set(range(n))
    # window k scores every token with k: the merge must say, for each word, which window it used
    scores = [np.full((len(w), 1), k, dtype=np.float32) for k, w in enumerate(windows)]
    merged = merge_windows(windows, scores, n)
    assert merged.shape == (n, 1)
    for word in range(n):
        cands = [(w.centrality(word), k) for k, w in enumerate(windows) if word in w.word_pos]
        best = max(cands)[0]
        chosen = int(merged[word, 0])
        assert windows[chosen].centrality(word) == best
    # a word in the overlap of windows 0 and 1, near the end of window 0, comes from window 1
    w0, w1 = windows[0], windows[1]
    late = max(k for k in w0.word_pos if k in w1.word_pos)
    assert int(merged[late, 0]) == 1


def test_merge_rejects_words_without_window(tok):
    (win,) = encode_page(["total"], [(0, 0, 1, 1)], tok)
    with pytest.raises(ValueError):
        merge_windows([win], [np.zeros((len(win), 2))], 2)


def test_collate_pads_with_pad_id_and_mask(tok):
    a = encode_page(["total", "12,50"], [(0, 0, 1, 1)] * 2, tok, tags=["O", "B-total"], label2id=LABEL2ID)[0]
    b = encode_page(["eur"], [(0, 0, 1, 1)], tok, tags=["B-currency"], label2id=LABEL2ID)[0]
    batch = collate([a, b], pad_id=tok.pad_token_id)
    assert batch["input_ids"].shape == (2, len(a))
    assert batch["attention_mask"][1].sum().item() == len(b)
    assert (batch["input_ids"][1, len(b):] == tok.pad_token_id).all()
    assert (batch["labels"][1, len(b):] == IGNORE).all()
    assert batch["bbox"].shape == (2, len(a), 4)


def test_empty_page_gives_one_window(tok):
    (win,) = encode_page([], [], tok)
    assert win.input_ids == [tok.cls_token_id, tok.sep_token_id] and win.word_pos == {}


def test_image_tensors():
    img = Image.new("RGB", (300, 600), (255, 0, 0))  # pure red
    v2 = image_tensor_v2(img)
    assert v2.shape == (3, 224, 224) and v2.dtype == torch.float32
    assert v2[2].mean().item() == pytest.approx(255) and v2[0].mean().item() == pytest.approx(0)  # BGR
    v3 = pixel_values_v3(img)
    assert v3.shape == (3, 224, 224)
    assert v3[0].mean().item() == pytest.approx(1.0) and v3[2].mean().item() == pytest.approx(-1.0)
    assert image_tensor_v2(None).min().item() == 255  # no image: blank paper


def test_layout_boxes_line_mode_shares_line_y():
    from socratext.document import OcrPage, Word
    from socratext.model.encoding import layout_boxes

    page = OcrPage([Word("TOTAL", (10, 100, 60, 120), line_id=0),
                    Word("12,50", (300, 96, 360, 124), line_id=0),
                    Word("MERCI", (10, 200, 60, 220), line_id=1)], 1000, 1000)
    assert layout_boxes(page, "word") == page.norm_boxes()
    line = layout_boxes(page, "line")
    assert line[0] == (10, 96, 60, 124) and line[1] == (300, 96, 360, 124)
    assert line[2] == (10, 200, 60, 220)
    with pytest.raises(ValueError):
        layout_boxes(page, "cell")


def test_page_norm_boxes_are_each_words_normalize_box() -> None:
    """`OcrPage.norm_boxes` scales the whole page at once: exactly `normalize_box` word by word,
    halves rounded to even, boxes off the page clamped to 0-1000, an empty page empty."""
    from socratext.document import OcrPage, Word, normalize_box

    rng = np.random.default_rng(0)
    boxes = [tuple(int(v) for v in rng.integers(-50, 1300, 4)) for _ in range(300)]
    boxes += [(1, 3, 5, 7), (0, 0, 999, 1999), (2, 2, 2, 2)]  # 2.5, 7.5, ... on a 400 x 400 page
    for width, height in ((400, 400), (1000, 2000), (733, 1251), (0, 0)):
        page = OcrPage([Word("w", b) for b in boxes], width, height)
        assert page.norm_boxes() == [normalize_box(b, width, height) for b in boxes]
        assert all(type(v) is int for b in page.norm_boxes() for v in b)
    assert OcrPage([], 10, 10).norm_boxes() == []

