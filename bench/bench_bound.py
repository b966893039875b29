"""The compute bound: load + OCR + extractor + assembly on the same receipts, in a plain loop in one process.

    .venv/bin/python -m bench.bench_bound --n 30 [--model rules] [--out bench/results/bound.json]

Per-stage CPU milliseconds per receipt, and the bound throughput of this machine if every core ran this
loop (cores / CPU seconds per receipt): the ceiling `bench_pipeline` is compared against. Uses the same
synthetic seeds as `bench_pipeline` by default.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--seed", type=int, default=710000)
    ap.add_argument("--model", default="rules")
    ap.add_argument("--out", type=Path, default=Path("bench/results/bound.json"))
    args = ap.parse_args(argv)

    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    from socratext.imaging import load_images
    from socratext.pipeline import ExtractStage, OcrStage, load_extractor
    from training.synth.generator import generate_receipt

    blobs = []
    for i in range(args.n):
        buf = io.BytesIO()
        generate_receipt(args.seed + i, degrade=True).image.save(buf, "JPEG", quality=88)
        blobs.append(buf.getvalue())
    ocr, extract = OcrStage(), ExtractStage(load_extractor(args.model))
    stages: dict[str, list[float]] = {"load": [], "ocr": [], "extract": []}

    def cpu() -> float:
        t = os.times()  # this process and its finished children (Tesseract runs as a child process)
        return t.user + t.system + t.children_user + t.children_system

    wall0 = time.perf_counter()
    for i, data in enumerate(blobs):
        c0 = cpu()
        images = load_images(data)
        c1 = cpu()
        res = ocr(images)[0]
        c2 = cpu()
        extract([res.page], [res.image], [str(i)], [{"path": str(i)}])
        c3 = cpu()
        for name, v in (("load", c1 - c0), ("ocr", c2 - c1), ("extract", c3 - c2)):
            stages[name].append(v * 1e3)
    wall = time.perf_counter() - wall0
    per = {k: round(statistics.mean(v), 1) for k, v in stages.items()}
    total_ms = sum(per.values())
    cores = os.cpu_count() or 1
    res = {"n": args.n, "model": args.model, "cpu_ms_per_receipt": per, "cpu_ms_total": round(total_ms, 1),
           "wall_s_one_process": round(wall, 2), "cores": cores,
           "bound_rps_all_cores": round(cores * 1e3 / total_ms, 3)}
    print(f"{'stage':<10}{'CPU ms/receipt':>16}")
    for k, v in per.items():
        print(f"{k:<10}{v:>16}")
    print(f"{'total':<10}{round(total_ms, 1):>16}")
    print(f"bound on {cores} cores: {res['bound_rps_all_cores']} receipts/s "
          f"(one process, one core: {args.n / wall:.3f} receipts/s wall)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
