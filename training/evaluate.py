"""End-to-end evaluation: image → Tesseract → extractor → fields, per-field precision / recall / F1.

    python -m training.evaluate --dataset synthetic --n 100 --extractors rules,default
    python -m training.evaluate --dataset sroie --extractors rules,default --out bench/results/eval_sroie.json

OCR runs once per image and is shared by every extractor compared, so the table compares extractors on
exactly the same words. The OCR pages are cached on disk (`~/.cache/socratext/eval-ocr/`, keyed by the image
bytes and every OCR setting; `--no-ocr-cache` turns it off): Tesseract is ~95 % of an evaluation's time, so
comparing a new model against the rules on the same held-out set then takes seconds, not minutes.
Held-out sets: synthetic seeds from 900000 on (training never uses them), and the
last 20 % of SROIE stems in sorted order (`../shared/data/sroie`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image

from socratext.document import OcrPage
from socratext.fields import normalize
from socratext.fields.known import KnownValues
from training.datasets.common import CACHE_DIR, VAL_FRACTION, evenly_spaced, image_key, split_train_val
from training.datasets.reconcile import same_value
from training.datasets.sroie import KEY_TO_FIELD, SROIE_DIR, contract_gold, read_key, train_stems
from training.datasets.sroie import held_out_stems as sroie_held_out
from training.datasets.synthetic import HELD_OUT_SEED as HELD_OUT_SYNTH_SEED
from training.datasets.synthetic import train_seeds

EVAL_OCR_CACHE = CACHE_DIR / "eval-ocr"
KNOWN_SUFFIX = "+known"


def sroie_gold(stem: str, root: Path = SROIE_DIR) -> dict[str, str]:
    """SROIE key fields in the output contract's form (date ISO, total decimal, texts as written)."""
    return contract_gold(read_key(stem, root))


@dataclass
class Sample:
    name: str
    image: Image.Image | None
    gold: dict[str, str]
    page: OcrPage | None = None  # words already read (Label Studio): no OCR, the extractors read these
    items: list[dict[str, str]] | None = None  # the line items, where the data set knows them (not SROIE)


def validation_sroie_stems(val_fraction: float = VAL_FRACTION) -> list[str]:
    """The SROIE stems `training.train` keeps for validation (never trained on, never held out)."""
    return split_train_val(train_stems(), val_fraction)[1]


def training_sroie_stems(val_fraction: float = VAL_FRACTION) -> list[str]:
    """The SROIE stems `training.train` trains on (its training stems less the validation ones)."""
    return split_train_val(train_stems(), val_fraction)[0]


def validation_synth_seeds(n_synth: int = 2000, val_fraction: float = VAL_FRACTION) -> list[int]:
    """The synthetic seeds `training.train --n-synth N` keeps for validation."""
    return split_train_val(train_seeds(n_synth), val_fraction)[1]


def iter_sroie(n: int | None = None, stems: list[str] | None = None) -> Iterator[Sample]:
    for stem in (sroie_held_out() if stems is None else stems)[:n]:
        with Image.open(SROIE_DIR / "img" / f"{stem}.jpg") as im:
            yield Sample(stem, im.convert("RGB"), sroie_gold(stem))


def iter_synthetic(n: int, start: int = HELD_OUT_SYNTH_SEED,
                   seeds: list[int] | None = None) -> Iterator[Sample]:
    """Held-out synthetic receipts from `start`, or the given (validation) `seeds`."""
    from training.synth.generator import generate_receipt

    if seeds is None:
        if start < HELD_OUT_SYNTH_SEED:
            raise ValueError(f"synthetic seeds below {HELD_OUT_SYNTH_SEED} are training data")
        seeds = list(range(start, start + n))
    for seed in seeds[:n]:
        r = generate_receipt(seed, degrade=True)
        yield Sample(f"synth-{seed}", r.image, dict(r.fields), items=[dict(i) for i in r.items])


LABELSTUDIO_FIELDS = ["merchant_name", "date", "total"]  # the fields its annotators labelled


def iter_labelstudio(n: int | None = None, part: str = "held-out") -> Iterator[Sample]:
    """The Label Studio sample's held-out tasks (last 20 % by id; `part` "train": its first 80 %, the pages
    the rules may be studied on; "validation": the last tenth of those, which `training.train` validates on
    and never trains on), with the annotators' words: the true
    values are their labelled words read through the same field assembly as every prediction, so a
    miss is the extractor's choice of words, never a normalisation difference. No images, so no OCR:
    this split measures the rules and the model alone, whatever the OCR engine."""
    from socratext.document import WordLabel
    from socratext.fields.assemble import assemble_receipt
    from training.datasets.labelstudio import SAMPLE, load_export, split

    if not SAMPLE.is_file():
        return
    train, held = split(load_export())
    pages = {"held-out": held, "train": train, "validation": split_train_val(train, VAL_FRACTION)[1]}[part]
    for lp in pages[:n]:
        truth = assemble_receipt(lp.page, [WordLabel(lab, 1.0) for lab in lp.labels], receipt_id=lp.id,
                                 source={}, model={})
        gold = {k: v.value for k, v in truth.fields.items() if k in LABELSTUDIO_FIELDS}
        yield Sample(lp.id or f"ls-{len(lp.page.words)}", None, gold, page=lp.page,
                     items=list(truth.export().get("items") or []))


def same(field_name: str, pred: str, gold: str) -> bool:
    """Exact match after whitespace normalisation (texts also compared case-insensitively)."""
    return same_value(field_name, pred, gold)


def hit(field_name: str, pred: str | None, gold: str | None) -> bool:
    """A true value read right (a missing value on both sides is not a hit, nor a miss)."""
    return pred is not None and gold is not None and same(field_name, pred, gold)


_FINDERS: dict[str, Callable[[str], list[tuple[int, int, str]]]] = {
    "date": normalize.find_dates, "time": normalize.find_times,
    "total": normalize.find_amounts, "vat_total": normalize.find_amounts,
}


def readable(field_name: str, gold: str, page: OcrPage) -> bool:
    """Do the OCR words hold the true value at all, so that some choice of words would give it?

    Why: an extractor cannot beat what Tesseract read. A miss on a readable value is the extractor's
    (wrong words chosen: what a model could learn to fix); a miss on an unreadable one is the OCR's
    (misread letters: only better OCR or known values fix it). Dates, times and amounts: some line parses
    to the value. Everything else: the value, without spaces and case, is a substring of the page's text in
    reading order (lines joined), which also finds multi-line names and addresses."""
    lines = [" ".join(page.words[i].text for i in idx) for idx in page.lines()]
    finder = _FINDERS.get(field_name)
    if finder is not None:
        return any(same(field_name, value, gold) for line in lines for _, _, value in finder(line))
    squash = "".join(lines).replace(" ", "").upper()
    return "".join(gold.split()).upper() in squash


@dataclass
class Miss:
    """One field an extractor got wrong on one receipt (`--errors`)."""

    receipt: str
    extractor: str
    field: str
    predicted: str | None
    gold: str | None
    readable: bool | None  # None where there is no true value (a spurious prediction)


def misses(receipt: str, extractor: str, fields: list[str], pred: dict[str, str], gold: dict[str, str],
           page: OcrPage) -> list[Miss]:
    """Every field of `fields` where `pred` does not match `gold` (wrong, missing or spurious)."""
    out = []
    for f in fields:
        p, g = pred.get(f), gold.get(f)
        if (p is None and g is None) or hit(f, p, g):
            continue
        out.append(Miss(receipt, extractor, f, p, g, None if g is None else readable(f, g, page)))
    return out


def item_key(item: dict[str, str]) -> tuple[str, str | None]:
    """What makes a line item right: its name (spaces and case aside) and its line total. Quantity and
    unit price are often not printed, and a wrong name or total is what a person would correct."""
    return " ".join(str(item.get("name") or "").split()).upper(), item.get("total_price")


def match_items(pred: list[dict[str, str]], gold: list[dict[str, str]],
                ) -> tuple[int, list[dict[str, str]], list[dict[str, str]]]:
    """(items right, predicted items matching no true one, true items no prediction matched): a
    multiset match on `item_key`, so a receipt listing the same article twice needs it twice."""
    left = Counter(item_key(g) for g in gold)
    spurious, missed = [], []
    for p in pred:
        if left[item_key(p)] > 0:
            left[item_key(p)] -= 1
        else:
            spurious.append(p)
    for g in gold:  # as many of each unmatched key as are left
        if left[item_key(g)] > 0:
            left[item_key(g)] -= 1
            missed.append(g)
    return len(pred) - len(spurious), spurious, missed


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, pred: str | None, gold: str | None, ok: bool) -> None:
        if pred is not None and gold is not None and ok:
            self.tp += 1
            return
        if pred is not None:
            self.fp += 1
        if gold is not None:
            self.fn += 1

    def prf_table(self) -> dict[str, float]:
        return dict(zip(("precision", "recall", "f1"), (round(v, 4) for v in self.prf()), strict=True))

    def prf(self) -> tuple[float, float, float]:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)


@dataclass
class Score:
    fields: list[str]
    counts: dict[str, Counts] = field(default_factory=dict)
    receipts: int = 0
    date_and_total: int = 0
    model_ms: list[float] = field(default_factory=list)
    ocr_ms: list[float] = field(default_factory=list)  # OCR wall ms of each receipt, both passes
    second_passes: int = 0  # receipts the OCR read twice (the first pass missed the date or total line)
    items: Counts | None = None  # line items, on the data sets that know them (not in the micro F1)

    def update(self, pred: dict[str, str], gold: dict[str, str], model_ms: float,
               ocr_timings: dict[str, float] | None = None) -> None:
        self.receipts += 1
        self.model_ms.append(model_ms)
        if ocr_timings:
            self.ocr_ms.append(ocr_timings.get("ocr", 0.0) + ocr_timings.get("ocr_second_pass", 0.0))
            self.second_passes += "ocr_second_pass" in ocr_timings
        for f in self.fields:
            p, g = pred.get(f), gold.get(f)
            self.counts.setdefault(f, Counts()).add(p, g, hit(f, p, g))
        if all(hit(f, pred.get(f), gold.get(f)) for f in ("date", "total")):
            self.date_and_total += 1

    def update_items(self, pred: list[dict[str, str]], gold: list[dict[str, str]],
                     ) -> tuple[int, list[dict[str, str]], list[dict[str, str]]]:
        """Count one receipt's line items; return `match_items`'s answer (for `--errors`)."""
        right, spurious, missed = match_items(pred, gold)
        self.items = self.items or Counts()
        self.items.tp += right
        self.items.fp += len(spurious)
        self.items.fn += len(missed)
        return right, spurious, missed

    def table(self) -> dict[str, object]:
        per = {f: c.prf_table() for f, c in self.counts.items()}
        total = Counts(sum(c.tp for c in self.counts.values()), sum(c.fp for c in self.counts.values()),
                       sum(c.fn for c in self.counts.values()))
        ms = sorted(self.model_ms)
        return {"receipts": self.receipts, "per_field": per, "micro": total.prf_table(),
                "date_and_total_exact": round(self.date_and_total / max(self.receipts, 1), 4),
                "model_ms_per_receipt_median": round(ms[len(ms) // 2], 2) if ms else None,
                "ocr_ms_per_receipt_mean": (round(sum(self.ocr_ms) / len(self.ocr_ms), 1)
                                            if self.ocr_ms else None),
                "ocr_second_pass_share": round(self.second_passes / max(self.receipts, 1), 4),
                "items": None if self.items is None else self.items.prf_table()}


class CachedOcrStage:
    """`OcrStage` with its pages kept on disk, keyed by the image and every setting that changes the OCR.

    Only the page and whether the sharpened second pass won are stored; the preprocessed image the boxes
    refer to is rebuilt (deterministic, ~50 ms) for extractors that look at pixels."""

    def __init__(self, cache_dir: Path | None) -> None:
        from socratext.pipeline import OcrStage

        self.stage = OcrStage()
        self.cache_dir = cache_dir

    def _key(self, img: Image.Image) -> str:
        s, engine = self.stage.settings, self.stage.ocr
        second = self.stage.second_ocr
        return image_key(img, f"stage|{s.ocr_languages}|{s.ocr_max_side}|{s.ocr_deskew}|{s.ocr_second_pass}|"
                              f"{type(engine).__name__}|{engine.config}|"
                              f"{second.config if second is not None else ''}")

    def __call__(self, images: list[Image.Image]) -> list[object]:
        from socratext.document import OcrPage
        from socratext.pipeline import OcrResult, sharpen

        if self.cache_dir is None:
            return list(self.stage(images))
        out: list[object] = []
        for img in images:
            path = self.cache_dir / f"{self._key(img)}.json"
            if path.is_file():
                d = json.loads(path.read_text())
                second = d.get("second_engine", False)
                pre = (self.stage.second_ocr if second else self.stage.ocr).prepare(img)
                out.append(OcrResult(OcrPage.from_dict(d["page"]), sharpen(pre) if d["sharpened"] else pre,
                                     d["timings_ms"], d["sharpened"], second))
                continue
            (res,) = self.stage([img])
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"page": res.page.export(), "timings_ms": res.timings_ms,
                                       "sharpened": res.sharpened, "second_engine": res.second_engine}))
            tmp.replace(path)
            out.append(res)
        return out


def evaluate(samples: Iterator[Sample], extractors: dict[str, object], fields: list[str],
             on_sample: Callable[[int], None] | None = None,
             ocr_cache: Path | None = None, known: KnownValues | None = None,
             errors: list[Miss] | None = None) -> dict[str, dict[str, object]]:
    """Run OCR once per sample, then every extractor on the same words; return one table per extractor.
    Extractors named "...+known" assemble their fields with the `known` values. Each miss is appended
    to `errors` when it is given."""
    from socratext.pipeline import ExtractStage

    ocr = CachedOcrStage(ocr_cache)
    stages = {name: ExtractStage(ext, known=known if name.endswith(KNOWN_SUFFIX) else None)  # type: ignore[arg-type]
              for name, ext in extractors.items()}
    scores = {name: Score(fields) for name in extractors}
    from socratext.pipeline import OcrResult

    for i, s in enumerate(samples, 1):
        res = OcrResult(s.page, None, {}) if s.page is not None else ocr([s.image])[0]  # type: ignore[arg-type]
        for name, stage in stages.items():
            rec = stage([res.page], [res.image], [s.name], [{"path": s.name}])[0]
            pred = {k: v.value for k, v in rec.fields.items()}
            scores[name].update(pred, s.gold, rec.timings_ms.get("model", 0.0), res.timings_ms)
            if s.items is not None:
                _, spurious, missed = scores[name].update_items(rec.export().get("items") or [], s.items)
                if errors is not None:
                    errors.extend(Miss(s.name, name, "items", _item_text(p), None, None) for p in spurious)
                    errors.extend(Miss(s.name, name, "items", None, _item_text(g), True) for g in missed)
            if errors is not None:
                errors.extend(misses(s.name, name, fields, pred, s.gold, res.page))
        if on_sample:
            on_sample(i)
    return {name: sc.table() for name, sc in scores.items()}


def _item_text(item: dict[str, str]) -> str:
    return f"{item.get('name')} | {item.get('total_price')}"


def _prf_cells(d: dict[str, float]) -> str:
    return f"{d['precision']:>10.3f}{d['recall']:>8.3f}{d['f1']:>8.3f}"


def print_tables(results: dict[str, dict[str, object]], title: str) -> None:
    names = list(results)
    fields = list(next(iter(results.values()))["per_field"])  # type: ignore[arg-type]
    print(f"\n{title}")
    head = f"{'field':<18}" + "".join(f"{n + ' P/R/F1':>26}" for n in names)
    print(head)
    print("-" * len(head))
    for f in fields + ["micro"]:
        row = f"{f:<18}"
        for n in names:
            d = results[n]["micro"] if f == "micro" else results[n]["per_field"][f]  # type: ignore[index]
            row += _prf_cells(d)
        print(row)
    if all(results[n].get("items") for n in names):  # name and line total both right; not in the micro
        print(f"{'line items':<18}" + "".join(_prf_cells(results[n]["items"]) for n in names))  # type: ignore[arg-type]
    for n in names:
        r = results[n]
        print(f"{n}: {r['receipts']} receipts, date+total exact {r['date_and_total_exact']:.1%}, "
              f"model ms/receipt (median) {r['model_ms_per_receipt_median']}, OCR ms/receipt (mean, wall) "
              f"{r['ocr_ms_per_receipt_mean']}, second OCR pass on {r['ocr_second_pass_share']:.0%}")


def write_errors(path: Path, errors: list[Miss]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        for m in errors:
            fh.write(json.dumps(asdict(m), ensure_ascii=False) + "\n")


def miss_causes(errors: list[Miss], extractor: str, field_name: str) -> tuple[int, int, int]:
    """(readable, unreadable, spurious) misses of one extractor on one field."""
    ms = [m for m in errors if m.extractor == extractor and m.field == field_name]
    return (sum(m.readable is True for m in ms), sum(m.readable is False for m in ms),
            sum(m.readable is None for m in ms))


def print_miss_causes(errors: list[Miss], names: list[str], fields: list[str]) -> None:
    print("\nmisses: readable in the OCR words (the extractor's) / not readable (the OCR's) / spurious")
    print(f"{'field':<18}" + "".join(f"{n:>26}" for n in names))
    for f in fields:
        cells = (" / ".join(str(c) for c in miss_causes(errors, n, f)) for n in names)
        print(f"{f:<18}" + "".join(f"{c:>26}" for c in cells))


def _extractor(name: str, load: Callable[[str], object]) -> object:
    """`load_extractor` names, plus "<model>+rules": that model combined with the rules
    (`socratext.model.combine.CombinedExtractor`, default settings) whatever its labels.json says, and
    any of those + "+known" (the same extractor, its fields corrected with `--known-values`)."""
    name = name.removesuffix(KNOWN_SUFFIX)
    if name.endswith("+rules"):
        from socratext.extractors.rules import RulesExtractor
        from socratext.model.combine import CombinedExtractor

        model = load(name.removesuffix("+rules"))
        if isinstance(model, CombinedExtractor):  # labels.json already asks for a combination
            model = model.model
        return CombinedExtractor(model, RulesExtractor())
    return load(name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=["synthetic", "sroie", "labelstudio"], default="synthetic",
                    help="labelstudio: the annotated French sample's held-out tasks (its training tasks with "
                         "--split train), on their own words")
    ap.add_argument("--n", type=int, default=None, help="number of receipts (synthetic default 100)")
    ap.add_argument("--first-seed", type=int, default=HELD_OUT_SYNTH_SEED,
                    help=f"first synthetic seed (held-out seeds start at {HELD_OUT_SYNTH_SEED})")
    ap.add_argument("--split", choices=["held-out", "validation", "train"], default="held-out",
                    help="held-out (the default, for reporting) or the pages training.train validates on "
                         "(for choosing between models and settings without looking at the held-out set); "
                         "SROIE's train: its training pages, --n of them evenly spaced (for choosing OCR "
                         "settings on more receipts than validation has; the rules were written on them, "
                         "so do not compare extractors there); Label Studio's train: its first 80 %% of "
                         "tasks, its validation: the last tenth of those")
    ap.add_argument("--n-synth", type=int, default=2000,
                    help="with --split validation: the training run's --n-synth (its last 10%% validate)")
    ap.add_argument("--extractors", default="rules,default",
                    help="comma-separated: rules, default, model directories, or any of those + '+rules'")
    ap.add_argument("--known-values", type=Path, default=None,
                    help="known names and addresses (training.known_values) for the '+known' extractors")
    ap.add_argument("--out", type=Path, default=None, help="write the tables as JSON here")
    ap.add_argument("--errors", type=Path, default=None,
                    help="write every miss (receipt, extractor, field, predicted, true, readable in the OCR "
                         "words?) as JSON lines here, and print the misses per extractor and cause")
    ap.add_argument("--no-ocr-cache", action="store_true", help="always run Tesseract (no page cache)")
    args = ap.parse_args(argv)
    if args.split == "train" and args.dataset == "synthetic":
        ap.error("--split train is SROIE's and Label Studio's (synthetic training receipts: any seed below "
                 "the held-out ones)")

    from tqdm import tqdm

    from socratext.labels import FIELDS
    from socratext.pipeline import load_extractor

    extractors = {name: _extractor(name, load_extractor) for name in args.extractors.split(",")}
    known = KnownValues.load(args.known_values) if args.known_values else None
    if known is None and any(name.endswith(KNOWN_SUFFIX) for name in extractors):
        ap.error("'+known' extractors need --known-values")
    if args.dataset == "sroie":
        if not SROIE_DIR.exists():
            print(f"no SROIE data at {SROIE_DIR}", file=sys.stderr)
            return 2
        stems = {"validation": validation_sroie_stems, "train": training_sroie_stems,
                 "held-out": sroie_held_out}[args.split]()
        if args.split == "train" and args.n:
            stems = evenly_spaced(stems, args.n)
        n = min(args.n or len(stems), len(stems))
        samples, fields = iter_sroie(n, stems), list(KEY_TO_FIELD.values())
    elif args.dataset == "labelstudio":
        from training.datasets.labelstudio import SAMPLE

        if not SAMPLE.is_file():
            print(f"no Label Studio export at {SAMPLE}", file=sys.stderr)
            return 2
        # a handful of pages: read the export once, count them
        held = list(iter_labelstudio(args.n, part=args.split))
        n, samples, fields = len(held), iter(held), list(LABELSTUDIO_FIELDS)
    elif args.split == "validation":
        seeds = validation_synth_seeds(args.n_synth)
        n = min(args.n or len(seeds), len(seeds))
        samples, fields = iter_synthetic(n, seeds=seeds), list(FIELDS)
    else:
        n = args.n or 100
        samples, fields = iter_synthetic(n, args.first_seed), list(FIELDS)
    t0 = time.perf_counter()
    errors: list[Miss] | None = [] if args.errors else None
    with tqdm(total=n, desc=f"evaluate {args.dataset}", file=sys.stderr) as bar:
        results = evaluate(samples, extractors, fields, on_sample=lambda i: bar.update(1),
                           ocr_cache=None if args.no_ocr_cache else EVAL_OCR_CACHE, known=known,
                           errors=errors)
    print_tables(results, f"{args.dataset}: end-to-end per-field precision / recall / F1 ({n} {args.split})")
    if args.errors and errors is not None:
        write_errors(args.errors, errors)
        with_items = any(m.field == "items" for m in errors)
        print_miss_causes(errors, list(extractors), fields + (["items"] if with_items else []))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"dataset": args.dataset, "split": args.split, "n": n,
                                        "seconds": time.perf_counter() - t0, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
