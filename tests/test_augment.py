"""OCR-noise augmentation keeps every copy labelled and varies only what OCR varies."""

from __future__ import annotations

import random

from socratext.document import OcrPage, Word
from socratext.labels import OTHER
from training.augment import CONFUSIONS, augment_pages, noisy_page, noisy_text
from training.datasets.common import LabeledPage


def page(n: int = 40) -> LabeledPage:
    words = [Word(f"W{i}ORD", (10 + 30 * (i % 8), 20 * (i // 8) + 5, 35 + 30 * (i % 8), 20 * (i // 8) + 18),
                  line_id=i // 8) for i in range(n)]
    labels = ["total" if i % 5 == 0 else OTHER for i in range(n)]
    return LabeledPage(OcrPage(words, 300, 200), labels, id="p")


def test_noisy_text_only_uses_known_confusions() -> None:
    rng = random.Random(0)
    outs = {noisy_text("SDN BHD 10,50", rng, 1.0) for _ in range(50)}
    assert "SDN BHD 10,50" not in outs and len(outs) > 10
    for out in outs:
        assert out and len(out) <= len("SDN BHD 10,50") + 5
    assert noisy_text("xyz", rng, 1.0) == "xyz"  # nothing Tesseract confuses
    assert all(isinstance(v, tuple) and v for v in CONFUSIONS.values())


def test_noisy_page_keeps_labels_aligned_and_boxes_inside() -> None:
    lp = page()
    rng = random.Random(1)
    for _ in range(20):
        out = noisy_page(lp, rng, p_drop=0.3)
        assert len(out.labels) == len(out.page.words)
        assert out.labels.count("total") == lp.labels.count("total")  # field words are never dropped
        for w in out.page.words:
            x0, y0, x1, y1 = w.box
            assert 0 <= x0 < x1 <= lp.page.width and 0 <= y0 < y1 <= lp.page.height


def test_augment_is_deterministic_and_counts() -> None:
    pages = [page(16), page(24)]
    a, b = augment_pages(pages, 3, seed=7), augment_pages(pages, 3, seed=7)
    assert len(a) == 6
    assert [[w.text for w in p.page.words] for p in a] == [[w.text for w in p.page.words] for p in b]
    assert augment_pages(pages, 3, seed=8) != a
