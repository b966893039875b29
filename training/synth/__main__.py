"""`python -m training.synth --n N --seed S --out DIR [--no-degrade]`: write NNNN.jpg + NNNN.json.

`python -m training.synth --write-samples` regenerates the bundled demo receipts in socratext/samples.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from training.synth.generator import generate_receipt, receipt_seed
from training.synth.samples import write_samples


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.synth", description=__doc__)
    ap.add_argument("--n", type=int, default=100, help="number of receipts")
    ap.add_argument("--seed", type=int, default=0, help="base seed; receipt i uses seed*100000+i")
    ap.add_argument("--out", type=Path, default=Path("out/synth"), help="output directory")
    ap.add_argument("--no-degrade", action="store_true", help="clean renderings (no photo effects)")
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality of the written images")
    ap.add_argument("--write-samples", action="store_true", help="rewrite socratext/samples and exit")
    args = ap.parse_args(argv)
    if args.write_samples:
        for p in write_samples():
            print(p)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(args.n), desc="synth receipts", unit="rcpt"):
        seed = receipt_seed(args.seed, i)
        r = generate_receipt(seed, degrade=not args.no_degrade)
        stem = args.out / f"{i:04d}"
        r.image.save(stem.with_suffix(".jpg"), format="JPEG", quality=args.quality)
        gt = r.export()
        gt["image"] = f"{i:04d}.jpg"
        stem.with_suffix(".json").write_text(json.dumps(gt, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
