"""Synthetic receipts: determinism, arithmetic, valid identifiers, exact word boxes, recoverable fields."""

from __future__ import annotations

import io
import json
import re
from collections import defaultdict
from decimal import Decimal
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from socratext.fields.normalize import luhn_ok
from socratext.labels import WORD_LABELS
from training.synth import content as C
from training.synth.__main__ import main as synth_main
from training.synth.generator import KINDS, SynthReceipt, generate_receipt, iter_receipts, receipt_seed
from training.synth.samples import MAX_BYTES, SAMPLE_SPECS, SAMPLES_DIR

SEEDS = range(24)


@cache
def clean(seed: int) -> SynthReceipt:
    return generate_receipt(seed, degrade=False)


@cache
def degraded(seed: int) -> SynthReceipt:
    return generate_receipt(seed, degrade=True)


def jpeg_bytes(r: SynthReceipt) -> bytes:
    buf = io.BytesIO()
    r.image.save(buf, format="PNG")
    return buf.getvalue()


def by_label(r: SynthReceipt, label: str) -> list[list[str]]:
    """Words of one label, grouped by printed line (in reading order)."""
    lines: dict[int, list[str]] = defaultdict(list)
    for w in r.words:
        if w.label == label:
            lines[w.line_id].append(w.text)
    return list(lines.values())


def amount(text: str) -> Decimal:
    return Decimal(text.replace(" ", "").replace(",", "."))


# -------------------------------------------------------------------------------------------- identifiers


def test_luhn_and_vat_key_on_known_numbers() -> None:
    assert luhn_ok("73282932000074")  # a published SIRET
    assert not luhn_ok("73282932000075")
    assert C.make_vat_number("404833048") == "FR83404833048"  # a published FR VAT number


@pytest.mark.parametrize("seed", SEEDS)
def test_identifiers_are_valid(seed: int) -> None:
    f = clean(seed).fields
    if "siret" in f:
        assert re.fullmatch(r"\d{14}", f["siret"]) and luhn_ok(f["siret"])
        assert luhn_ok(f["siret"][:9])  # its SIREN too
    if "vat_number" in f:
        m = re.fullmatch(r"FR(\d\d)(\d{9})", f["vat_number"])
        assert m and int(m.group(1)) == (12 + 3 * (int(m.group(2)) % 97)) % 97


# -------------------------------------------------------------------------------------------- determinism


def test_same_seed_same_receipt() -> None:
    for degrade in (False, True):
        a, b = generate_receipt(11, degrade=degrade), generate_receipt(11, degrade=degrade)
        assert jpeg_bytes(a) == jpeg_bytes(b)
        assert a.words == b.words and a.fields == b.fields and a.items == b.items
    assert generate_receipt(12, degrade=False).words != generate_receipt(11, degrade=False).words


def test_degrade_changes_image_not_content() -> None:
    a, b = clean(3), degraded(3)
    assert a.fields == b.fields and a.items == b.items and a.vat_lines == b.vat_lines
    assert [(w.text, w.label, w.line_id) for w in a.words] == [(w.text, w.label, w.line_id) for w in b.words]
    assert a.image.size != b.image.size


def test_iter_receipts_uses_set_seeds() -> None:
    got = list(iter_receipts(2, seed=4, degrade=False))
    assert [r.seed for r in got] == [400000, 400001] == [receipt_seed(4, 0), receipt_seed(4, 1)]


# -------------------------------------------------------------------------------------------- arithmetic


@pytest.mark.parametrize("seed", SEEDS)
def test_amounts_are_consistent(seed: int) -> None:
    r = clean(seed)
    total = Decimal(r.fields["total"])
    assert total > 0
    assert sum(Decimal(i["total_price"]) for i in r.items) == total
    for i in r.items:
        if "quantity" in i and "unit_price" in i:
            exact = Decimal(i["quantity"]) * Decimal(i["unit_price"])
            assert abs(exact - Decimal(i["total_price"])) <= Decimal("0.005")
    rates = [v["rate"] for v in r.vat_lines]
    assert len(set(rates)) == len(rates) and set(rates) <= {"2.1", "5.5", "10.0", "20.0"}
    amounts = [Decimal(v["amount"]) for v in r.vat_lines]
    if all("base" in v for v in r.vat_lines):
        assert sum(Decimal(v["base"]) for v in r.vat_lines) + sum(amounts) == total
        for v in r.vat_lines:
            vat = Decimal(v["base"]) * Decimal(v["rate"]) / 100
            assert abs(vat - Decimal(v["amount"])) <= Decimal("0.01")
    if "vat_total" in r.fields:
        assert Decimal(r.fields["vat_total"]) == sum(amounts)
    assert r.fields["currency"] == "EUR"
    assert r.fields["payment_method"] in {"card", "cash", "cheque", "meal_voucher"}


# -------------------------------------------------------------------------------------------- words and boxes


@pytest.mark.parametrize("seed", range(12))
def test_clean_boxes_are_tight_on_glyphs(seed: int) -> None:
    r = clean(seed)
    g = np.asarray(r.image.convert("L"))
    h, w = g.shape
    assert 380 <= w <= 600
    for word in r.words:
        assert word.label in WORD_LABELS and word.text and " " not in word.text
        x0, y0, x1, y1 = word.box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, word
        crop = g[y0:y1, x0:x1]
        assert crop.min() < 128, word  # the glyphs are under the box...
        for edge in (crop[:, 0], crop[:, -1], crop[0, :], crop[-1, :]):
            assert edge.min() < 255, word  # ...and touch each of its sides (tight box)
        if x0 > 0 and y0 > 0 and x1 < w and y1 < h:
            ring = np.concatenate([g[y0:y1, x0 - 1], g[y0:y1, x1], g[y0 - 1, x0:x1], g[y1, x0:x1]])
            assert ring.min() > 200, word  # nothing inked just outside


@pytest.mark.parametrize("seed", range(8))
def test_degraded_boxes_follow_the_text(seed: int) -> None:
    r = degraded(seed)
    g = np.asarray(r.image.convert("L"), dtype=np.int16)
    h, w = g.shape
    lines: dict[int, list] = defaultdict(list)
    for word in r.words:
        x0, y0, x1, y1 = word.box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, word
        crop = g[y0:y1, x0:x1]
        if y1 - y0 >= 4:  # (a row of "____" is a 2-px line that blur can wash out)
            assert int(np.percentile(crop, 95)) - int(crop.min()) > 40, word  # ink on paper inside the box
        lines[word.line_id].append(word.box)
    for boxes in lines.values():  # words of a line are left to right and barely overlap
        for a, b in zip(boxes, boxes[1:], strict=False):
            assert a[0] < b[0] and a[2] - b[0] < 0.3 * min(a[2] - a[0], b[2] - b[0])


# ------------------------------------------------------------------------------------ recoverable fields

DATE_RES = (
    (r"(\d\d)/(\d\d)/(\d{4})", "dmy"), (r"(\d\d)/(\d\d)/(\d\d)", "dmy2"), (r"(\d\d)\.(\d\d)\.(\d{4})", "dmy"),
    (r"(\d\d)-(\d\d)-(\d{4})", "dmy"), (r"(\d{4})-(\d\d)-(\d\d)", "ymd"), (r"(\d{1,2}) (\S+) (\d{4})", "dMy"),
)


def parse_date(text: str) -> str:
    first = text.split(" ", 1)[0].rstrip(".").lower()
    if any(wd.startswith(first) for wd in C.WEEKDAYS_FR):  # "lundi 28 mars 2022", "mer. 02 févr. 22"
        text = text.split(" ", 1)[1]
        if re.fullmatch(r"\d\d \S+ \d\d", text):
            text = text[:-2] + "20" + text[-2:]
    months = [m.rstrip(".").lower() for m in C.MONTHS_FR]
    upper = [m.lower() for m in C.MONTHS_FR_UPPER]
    for rx, kind in DATE_RES:
        m = re.fullmatch(rx, text)
        if not m:
            continue
        a, b, c = m.groups()
        if kind == "ymd":
            return f"{a}-{b}-{c}"
        if kind == "dMy":
            mon = b.rstrip(".").lower()
            mi = months.index(mon) if mon in months else upper.index(mon)
            return f"{c}-{mi + 1:02d}-{int(a):02d}"
        year = c if kind == "dmy" else f"20{c}"
        return f"{year}-{b}-{a}"
    raise AssertionError(f"not a date: {text!r}")


@pytest.mark.parametrize("seed", SEEDS)
def test_fields_are_recoverable_from_their_words(seed: int) -> None:
    r = clean(seed)
    f = r.fields
    joined = {lab: [" ".join(ws) for ws in by_label(r, lab)] for lab in WORD_LABELS}
    assert joined["merchant_name"] == [f["merchant_name"]]
    assert ", ".join(joined["merchant_address"]) == f["merchant_address"]
    for key in ("siret", "vat_number"):
        assert "".join(joined[key]).replace(" ", "") == f.get(key, ""), key
    assert len(joined["date"]) == 1 and parse_date(joined["date"][0]) == f["date"]
    if "time" in f:
        assert len(joined["time"]) == 1 and re.fullmatch(r"(\d\d)[:h](\d\d)(:\d\d)?", joined["time"][0])
        assert joined["time"][0].replace("h", ":")[:5] == f["time"]
    else:
        assert not joined["time"]
    assert len(joined["total"]) == 1 and amount(joined["total"][0]) == Decimal(f["total"])
    if "vat_total" in f:
        assert len(joined["vat_total"]) == 1 and amount(joined["vat_total"][0]) == Decimal(f["vat_total"])
    else:
        assert not joined["vat_total"]
    assert joined["currency"] and all(t.strip("()") in ("€", "EUR") for t in joined["currency"])
    assert len(joined["payment_method"]) == 1
    printed = {kw: method for method, opts in C.PAYMENTS.items() for kw, _ in opts}
    assert printed[joined["payment_method"][0]] == f["payment_method"]

    assert joined["item_name"] == [i["name"] for i in r.items]
    assert [amount(t) for t in joined["item_total_price"]] == [Decimal(i["total_price"]) for i in r.items]
    assert [amount(t) for t in joined["item_unit_price"]] == [
        Decimal(i["unit_price"]) for i in r.items if "unit_price" in i]
    assert [amount(t) for t in joined["item_quantity"]] == [
        Decimal(i["quantity"]) for i in r.items if "quantity" in i]
    rates = [Decimal(t.replace(" ", "").rstrip("%").replace(",", ".")) for t in joined["vat_rate"]]
    assert rates == [Decimal(v["rate"]) for v in r.vat_lines]
    assert [amount(t) for t in joined["vat_amount"]] == [Decimal(v["amount"]) for v in r.vat_lines]
    assert [amount(t) for t in joined["vat_base"]] == [Decimal(v["base"]) for v in r.vat_lines if "base" in v]


def test_page_and_labels_feed_the_pipeline_types() -> None:
    r = clean(2)
    page, labels = r.page(), r.word_labels()
    assert len(page.words) == len(labels) == len(r.words)
    assert (page.width, page.height) == r.image.size
    assert [w.text for w in page.words] == [w.text for w in r.words]
    assert [lab.label for lab in labels] == r.labels()
    assert all(0 <= v <= 1000 for b in page.norm_boxes() for v in b)


def test_every_shop_kind_renders() -> None:
    for i, kind in enumerate(KINDS):
        r = generate_receipt(1000 + i, degrade=False, kind=kind)
        assert r.meta["kind"] == kind and r.items
    with pytest.raises(ValueError):
        generate_receipt(1, kind="garage")


# -------------------------------------------------------------------------------------------- CLI and samples


def test_cli_writes_images_and_ground_truth(tmp_path: Path) -> None:
    assert synth_main(["--n", "2", "--seed", "5", "--out", str(tmp_path), "--no-degrade"]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["0000.jpg", "0000.json", "0001.jpg", "0001.json"]
    gt = json.loads((tmp_path / "0001.json").read_text(encoding="utf-8"))
    assert gt["seed"] == 500001 and gt["fields"] == clean_fields(500001)
    assert {"words", "fields", "items", "vat_lines"} <= set(gt)
    from PIL import Image

    with Image.open(tmp_path / "0001.jpg") as im:
        assert im.size == (gt["width"], gt["height"])


def clean_fields(seed: int) -> dict[str, str]:
    return generate_receipt(seed, degrade=False).fields


def test_bundled_samples_match_their_generator() -> None:
    for i, (seed, kind) in enumerate(SAMPLE_SPECS, start=1):
        img, js = SAMPLES_DIR / f"sample_{i:02d}.jpg", SAMPLES_DIR / f"sample_{i:02d}.json"
        assert img.stat().st_size <= MAX_BYTES
        gt = json.loads(js.read_text(encoding="utf-8"))
        assert gt["seed"] == seed and gt["meta"]["kind"] == kind
        if i <= 2:  # regenerating all six is slow; two are enough to catch drift
            fresh = generate_receipt(seed, degrade=True, kind=kind)
            assert gt["fields"] == fresh.fields and gt["items"] == fresh.items
            assert [(w["text"], w["label"]) for w in gt["words"]] == [(w.text, w.label) for w in fresh.words]
            # boxes may move by a pixel or two under another FreeType build
            assert all(abs(a - b) <= 3 for w, f in zip(gt["words"], fresh.words, strict=True)
                       for a, b in zip(w["box"], f.box, strict=True))
    assert len({json.loads((SAMPLES_DIR / f"sample_{i:02d}.json").read_text())["meta"]["kind"]
                for i in range(1, 7)}) >= 5


# -------------------------------------------------------------------------------------------- OCR sanity


@pytest.mark.slow
def test_tesseract_reads_degraded_receipts() -> None:
    """Degradations stay moderate: Tesseract finds the printed total and most words.

    `--psm 6` (one uniform block) because the default automatic segmentation splits a receipt's
    amount column into separate blocks (measured with psm 6: totals found on 16/16 receipts of seeds
    100-115, mean exact-word recall 0.90; with the default segmentation 10/12 totals on seeds 0-11).
    """
    pytesseract = pytest.importorskip("pytesseract")
    recalls, totals = [], 0
    for seed in (2, 5, 9):
        r = degraded(seed)
        text = pytesseract.image_to_string(r.image, lang="fra+eng", config="--psm 6")
        totals += r.field_text["total"] in text
        tokens = set(text.split())
        recalls.append(sum(w.text in tokens for w in r.words) / len(r.words))
    # Tesseract itself misreads a digit now and then ("752,173" on a crisp print), hence 2 of 3.
    assert totals >= 2 and sum(recalls) / len(recalls) > 0.7, (totals, recalls)
