"""Has a layout model learnt receipts or memorised its training set? Word-level F1 per field on SROIE
receipts it was trained on against held-out ones, on the same kind of input (Tesseract words, labels
transferred from SROIE's key fields exactly as in training).

    python -m training.generalisation --n 40 [--model DIR] [--out FILE.json]

Why: the end-to-end table (`training.evaluate`) says *that* the model loses to the rules on SROIE, not
why. A model that scores far higher on its training receipts than on held-out ones has memorised them
(too little data for its size, no pretraining); one that scores low on both lacks capacity or was fed
bad labels; high on both with a low end-to-end score points at field assembly or at OCR.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from socratext.extractors.base import Extractor
from training.datasets.common import LabeledPage
from training.scoring import word_f1

FIELDS_SHOWN = ("merchant_name", "merchant_address", "date", "total")
"""The fields SROIE labels (its four key fields)."""


def word_scores(extractor: Extractor, pages: Sequence[LabeledPage], batch: int = 8) -> dict[str, Any]:
    """`word_f1` of the extractor's word labels against the pages' labels."""
    pred: list[list[str]] = []
    for b in range(0, len(pages), batch):
        chunk = pages[b:b + batch]
        labs = extractor.label([p.page for p in chunk], [p.image for p in chunk])
        pred += [[w.label for w in page] for page in labs]
    return word_f1([p.labels for p in pages], pred)


def compare(extractor: Extractor, splits: dict[str, Sequence[LabeledPage]]) -> dict[str, Any]:
    """Scores per split, plus each field's F1 gap (first split minus each other split)."""
    scores = {name: word_scores(extractor, pages) for name, pages in splits.items()}
    first, *others = list(scores)
    gap = {o: {f: round(scores[first]["per_label"].get(f, {}).get("f1", 0.0)
                        - scores[o]["per_label"].get(f, {}).get("f1", 0.0), 4)
               for f in FIELDS_SHOWN} for o in others}
    return {"splits": {n: {"pages": len(splits[n]), **s} for n, s in scores.items()}, "gap": gap}


def table(result: dict[str, Any]) -> str:
    names = list(result["splits"])
    lines = [f"{'field':<18}" + "".join(f"{n + ' P/R/F1':>28}" for n in names)]
    for f in FIELDS_SHOWN:
        row = f"{f:<18}"
        for n in names:
            d = result["splits"][n]["per_label"].get(f)
            row += f"{d['p']:>10.3f}{d['r']:>8.3f}{d['f1']:>8.3f}  " if d else f"{'-':>28}"
        lines.append(row)
    lines.append(f"{'pages':<18}" + "".join(f"{result['splits'][n]['pages']:>28}" for n in names))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="a model directory, or 'default' (the bundled one)")
    ap.add_argument("--n", type=int, default=40, help="receipts per split (the first N of each)")
    ap.add_argument("--out", type=Path, default=None, help="write the scores as JSON here")
    args = ap.parse_args(argv)

    from socratext.model.extractor import LayoutModelExtractor
    from socratext.pipeline import DEFAULT_MODEL_DIR
    from training.datasets.sroie import SROIE_DIR, held_out_stems, iter_sroie, train_stems

    if not SROIE_DIR.exists():
        print(f"no SROIE data at {SROIE_DIR}", file=sys.stderr)
        return 2
    src = DEFAULT_MODEL_DIR if args.model == "default" else args.model
    extractor = LayoutModelExtractor.from_pretrained(src, device="cpu", combine=False)
    splits = {"trained on": list(iter_sroie(train_stems()[: args.n], ocr=True)),
              "held out": list(iter_sroie(held_out_stems()[: args.n], ocr=True))}
    result = {"model": args.model, "version": extractor.version, **compare(extractor, splits)}
    print(f"SROIE word-level scores of {result['model']} ({result['version']}), Tesseract words")
    print(table(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
