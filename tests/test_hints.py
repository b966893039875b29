"""Rule hints: the rules' word labels as the layout model's token types (socratext/model/hints.py)."""

from __future__ import annotations

import datetime
import random

import pytest
import torch

from socratext.document import OcrPage, Word
from socratext.extractors.rules import label_page
from socratext.labels import BIO_LABELS, WORD_LABELS
from socratext.model.encoding import collate, encode_page, tokenize_words
from socratext.model.extractor import LayoutModelExtractor
from socratext.model.hints import HINT_INDEX, HINT_LABELS, enable_rule_hints, hint_ids, rule_hints, rules_id
from socratext.model.model_dir import save_model_dir
from socratext.model.tokenizer import train_wordpiece

LABEL2ID = {t: i for i, t in enumerate(BIO_LABELS)}


def _receipt() -> OcrPage:
    rows = [["CARREFOUR", "MARKET"], ["12", "rue", "de", "Paris"], ["12/03/2024", "14:05"],
            ["BAGUETTE", "1,20"], ["TOTAL", "TTC", "12,50"], ["CB", "12,50"]]
    words = [Word(w, (40 + 130 * k, 40 + 50 * li, 160 + 130 * k, 80 + 50 * li), line_id=li)
             for li, ws in enumerate(rows) for k, w in enumerate(ws)]
    return OcrPage(words, 800, 400)


@pytest.fixture(scope="module")
def tok():
    corpus = ["carrefour market 12 rue de paris", "total ttc 12,50 cb", "baguette 1,20 12/03/2024 14:05"] * 20
    corpus += [" ".join(f"w{i}" for i in range(30))] * 5
    return train_wordpiece(corpus, vocab_size=200, min_frequency=1)


def _tiny_hinted(tok, **overrides):
    from transformers import LayoutLMv3ForTokenClassification

    from socratext.model.layoutlmv3 import tiny_layoutlmv3_config

    cfg = tiny_layoutlmv3_config(len(tok), len(BIO_LABELS), pad_token_id=tok.pad_token_id, max_tokens=128,
                                 visual=False, has_relative_attention_bias=False,
                                 has_spatial_attention_bias=False, id2label=dict(enumerate(BIO_LABELS)),
                                 label2id=LABEL2ID, **overrides)
    return LayoutLMv3ForTokenClassification(enable_rule_hints(cfg))


def test_hint_ids_follow_the_word_label_order():
    assert HINT_LABELS[0] == "O" and set(HINT_LABELS) == set(WORD_LABELS)
    assert hint_ids(["O", "total", "no-such-label"]) == [0, HINT_INDEX["total"], 0]


def test_rule_hints_are_the_rules_labels_of_the_words():
    page = _receipt()
    hints = rule_hints(page)
    assert hints == hint_ids([w.label for w in label_page(page)])
    texts = [w.text for w in page.words]
    assert HINT_LABELS[hints[texts.index("12/03/2024")]] == "date"
    assert HINT_LABELS[hints[texts.index("TTC") + 1]] == "total"  # the amount after TOTAL TTC


def test_hints_go_on_every_subword_and_specials_get_none(tok):
    words = ["Supercalifragilistic", "12,50"]
    n0 = len(tokenize_words(tok, words)[0])
    assert n0 > 1, "the first word must split into several subwords for this test"
    (win,) = encode_page(words, [(0, 0, 10, 10), (20, 0, 30, 10)], tok, hints=[3, 7])
    assert win.token_type_ids == [0] + [3] * n0 + [7] * (len(win) - 2 - n0) + [0]
    with pytest.raises(ValueError, match="hints"):
        encode_page(words, [(0, 0, 10, 10)] * 2, tok, hints=[1])
    assert encode_page([], [], tok, hints=[])[0].token_type_ids == [0, 0]


def test_collate_pads_hints_with_zero_and_refuses_a_mix(tok):
    a = encode_page(["total", "12,50"], [(0, 0, 1, 1)] * 2, tok, hints=[0, 5])[0]
    b = encode_page(["eur"], [(0, 0, 1, 1)], tok, hints=[9])[0]
    batch = collate([a, b], tok.pad_token_id)
    assert batch["token_type_ids"].shape == batch["input_ids"].shape
    assert b.token_type_ids == [0] + [9] * (len(b) - 2) + [0]
    assert batch["token_type_ids"][1].tolist() == b.token_type_ids + [0] * (len(a) - len(b))
    assert "token_type_ids" not in collate([encode_page(["eur"], [(0, 0, 1, 1)], tok)[0]], 0)
    with pytest.raises(ValueError, match="rule hints"):
        collate([a, encode_page(["eur"], [(0, 0, 1, 1)], tok)[0]], tok.pad_token_id)


@pytest.mark.parametrize("family", ["layoutlmv3", "layoutlmv2"])
def test_both_architectures_read_the_hints(tok, family):
    """Changing only the hints changes the logits: the token type embedding is really in the forward."""
    torch.manual_seed(0)
    if family == "layoutlmv3":
        model = _tiny_hinted(tok)
    else:
        from socratext.model.layoutlmv2 import layoutlmv2_for_token_classification, tiny_layoutlmv2_config

        cfg = enable_rule_hints(tiny_layoutlmv2_config(len(tok), len(BIO_LABELS), max_tokens=128,
                                                       pad_token_id=tok.pad_token_id))
        model = layoutlmv2_for_token_classification(cfg)
    model.eval()
    page = _receipt()
    boxes = page.norm_boxes()
    texts = [w.text for w in page.words]
    logits = []
    for hints in ([0] * len(texts), rule_hints(page)):
        batch = collate(encode_page(texts, boxes, tok, hints=hints), tok.pad_token_id)
        if family == "layoutlmv2":
            batch["image"] = torch.zeros(1, 3, 224, 224)
        with torch.inference_mode():
            logits.append(model(**batch).logits)
    assert not torch.allclose(logits[0], logits[1])


def test_extractor_feeds_the_rules_labels_and_reloads_a_hinted_model(tok, tmp_path):
    torch.manual_seed(0)
    model = _tiny_hinted(tok)
    seen: list[torch.Tensor] = []
    forward = model.forward

    def spy(*args, **kwargs):
        seen.append(kwargs["token_type_ids"].clone())
        return forward(*args, **kwargs)

    model.forward = spy
    page = _receipt()
    ext = LayoutModelExtractor(model, tok, device="cpu", max_length=128)
    first = ext.label([page])
    (win,) = encode_page([w.text for w in page.words], page.norm_boxes(), tok)
    hints = rule_hints(page)
    assert len(seen) == 1
    for word, pos in win.word_pos.items():
        assert seen[0][0, pos].item() == hints[word]

    del model.forward
    out = save_model_dir(model, tok, tmp_path / "m", {"name": "hinted", "version": "1"})
    loaded = LayoutModelExtractor.from_pretrained(out, device="cpu", max_length=128, combine=False)
    assert loaded.rule_hints and loaded.model.config.rule_hints == rules_id()
    assert loaded.model.config.type_vocab_size == len(HINT_LABELS)
    assert not loaded.row_smoothing, "a hinted model's config turns row smoothing off"
    assert LayoutModelExtractor(loaded.model, tok, row_smoothing=True).row_smoothing
    assert [w.label for w in loaded.label([page])[0]] == [w.label for w in first[0]]


def test_combined_extractor_labels_each_page_once_for_a_hinted_model(tok, monkeypatch):
    """Around a model with rule hints, `CombinedExtractor` hands the rules' labels to the model as its
    hints instead of letting it label the pages again; the result is what the two-pass path gives."""
    import socratext.extractors.rules as rules_mod
    from socratext.extractors.rules import RulesExtractor
    from socratext.model.combine import CombinedExtractor

    torch.manual_seed(0)
    pages = [_receipt(), _receipt()]
    model = LayoutModelExtractor(_tiny_hinted(tok), tok, device="cpu", max_length=128)
    calls = []
    real = rules_mod.label_page

    def counting(page, today=None):
        calls.append(page)
        return real(page, today)

    monkeypatch.setattr(rules_mod, "label_page", counting)
    both = CombinedExtractor(model, RulesExtractor())
    assert both._hints_from_rules
    got = both.label(pages)
    assert len(calls) == len(pages), "the rules ran once per page"
    calls.clear()
    separate = zip(model.label(pages), RulesExtractor().label(pages), strict=True)
    expected = [both.merge(m, r) for m, r in separate]
    assert len(calls) == 2 * len(pages)  # the separate path: once for the hints, once for the rules

    def rounded(labels):
        return [[(w.label, round(w.probability, 5)) for w in p] for p in labels]

    assert rounded(got) == rounded(expected)
    # rules that label differently from the model's hints (here: a fixed "today") run apart
    assert not CombinedExtractor(model, RulesExtractor(today=datetime.date(2024, 1, 1)))._hints_from_rules


def test_a_model_fed_hints_from_other_rules_says_so(tok, caplog):
    model = _tiny_hinted(tok)
    LayoutModelExtractor(model, tok, device="cpu", max_length=128)
    assert not [r for r in caplog.records if "rules changed" in r.getMessage()]
    model.config.rule_hints = "rules-0"  # trained on an older version of the rules
    with caplog.at_level("WARNING", logger="socratext.model.extractor"):
        LayoutModelExtractor(model, tok, device="cpu", max_length=128)
    assert any("rules-0" in r.getMessage() and rules_id() in r.getMessage() for r in caplog.records)


def test_a_hinted_model_learns_what_the_hints_carry(tok):
    """Words are meaningless ("w0".."w29") and the gold label of a word is its hint: a model can only get
    the labels right by reading the hints. A few dozen steps take it far above chance (1/3)."""
    torch.manual_seed(0)
    rng = random.Random(0)
    choices = ["O", "total", "date"]

    def page(n: int = 12) -> tuple[list[str], list[tuple[int, int, int, int]], list[str]]:
        labels = [rng.choice(choices) for _ in range(n)]
        return ([f"w{rng.randrange(30)}" for _ in range(n)],
                [(10 + 60 * k, 100, 60 + 60 * k, 130) for k in range(n)], labels)

    def windows(pages):
        out = []
        for words, boxes, labels in pages:
            tags = [lab if lab == "O" else f"B-{lab}" for lab in labels]
            out += encode_page(words, boxes, tok, tags=tags, label2id=LABEL2ID, hints=hint_ids(labels))
        return out

    model = _tiny_hinted(tok)
    batch = collate(windows([page() for _ in range(32)]), tok.pad_token_id)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(40):
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    test = collate(windows([page() for _ in range(16)]), tok.pad_token_id)
    with torch.inference_mode():
        pred = model(**{k: v for k, v in test.items() if k != "labels"}).logits.argmax(-1)
    mask = test["labels"] != -100
    accuracy = (pred[mask] == test["labels"][mask]).float().mean().item()
    assert accuracy > 0.9
