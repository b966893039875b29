"""The memorisation check: word-level scores of a model on receipts it was trained on vs held-out ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from socratext.document import OcrPage, Word, WordLabel
from training.datasets.common import LabeledPage
from training.generalisation import FIELDS_SHOWN, compare, main, table


def _page(labels: list[str]) -> LabeledPage:
    words = [Word(text=f"w{i}", box=(10, 10 + 20 * i, 60, 25 + 20 * i), line_id=i)
             for i in range(len(labels))]
    return LabeledPage(OcrPage(words, 200, 400), labels)


class Memoriser:
    """Knows the labels of the pages it was "trained" on, and says "O" everywhere else."""

    name, version = "memoriser", "1"

    def __init__(self, seen: list[LabeledPage]) -> None:
        self.known = {id(p.page): p.labels for p in seen}

    def label(self, pages: list[OcrPage], images=None) -> list[list[WordLabel]]:
        return [[WordLabel(lab, 1.0) for lab in self.known.get(id(p), ["O"] * len(p.words))] for p in pages]


def test_a_memorising_model_shows_a_gap_per_field():
    trained = [_page(["merchant_name", "O", "date", "total"]), _page(["total", "merchant_address", "O"])]
    held = [_page(["merchant_name", "date", "total", "O"])]
    res = compare(Memoriser(trained), {"trained on": trained, "held out": held})
    train, other = res["splits"]["trained on"], res["splits"]["held out"]
    assert train["pages"] == 2 and train["macro_f1"] == 1.0
    assert all(d["r"] == 0.0 for d in other["per_label"].values())
    assert res["gap"]["held out"] == dict.fromkeys(FIELDS_SHOWN, 1.0)
    assert "merchant_address" in table(res) and "held out" in table(res)


def test_cli_on_real_sroie_receipts(tmp_path: Path):
    from training.datasets.sroie import SROIE_DIR

    if not SROIE_DIR.exists():
        pytest.skip("no SROIE data")
    assert main(["--n", "2", "--out", str(tmp_path / "g.json")]) == 0
    res = json.loads((tmp_path / "g.json").read_text())
    assert res["model"] == "default" and set(res["splits"]) == {"trained on", "held out"}
    for split in res["splits"].values():
        assert split["pages"] == 2
        assert {"date", "total"} <= set(split["per_label"])  # every SROIE receipt has both
        assert all(0.0 <= d["p"] <= 1.0 and 0.0 <= d["r"] <= 1.0 for d in split["per_label"].values())
