"""Peak resident memory (VmHWM) of each kind of worker process, after it has processed N receipts.

    .venv/bin/python -m bench.bench_memory --n 6 [--out bench/results/memory.json]

Three runs through the real local stack, each with fresh worker processes:
`ocr` + `extract` workers with the rules extractor, `ocr` + `extract` with the default layout model, and one
`all` worker (both stages in one process) with the default layout model. The figure is the kernel's
high-water mark of each process's resident set, read from /proc just before it is stopped, so it
includes model loading and the largest batch. With `ocr_backend=pytesseract` the `tesseract` children
are separate processes and not counted (about 100–150 MB each while they run).
Target: an extraction worker with the default model stays under 1.5 GB.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from bench.report import write_json
from bench.stackrun import Workers, collect, listen, loadavg, synthetic_files, upload_paced

RUNS = [  # (run name, model, stages)
    ("split-rules", "rules", ["ocr", "extract"]),
    ("split-default", "default", ["ocr", "extract"]),
    ("all-default", "default", ["all"]),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=6, help="receipts per run")
    ap.add_argument("--seed", type=int, default=720000)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--runs", default="", help="comma-separated run names (default: all)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/memory.json"))
    args = ap.parse_args(argv)

    from socratext import stack
    from socratext.settings import get_settings

    settings = get_settings()
    stack.up(settings)
    rows = []
    missing = 0
    for r, (name, model, stages) in enumerate(RUNS):
        if args.runs and name not in args.runs.split(","):
            continue
        load0 = loadavg()
        workers = Workers(settings, stages, {"SOCRATEXT_MODEL": model}).start()
        try:
            it = listen(settings, timeout=args.timeout)
            th, ids, known = upload_paced(settings, synthetic_files(args.n, args.seed + 1000 * r, name), None)
            known.wait()
            out = collect(it, settings, {x["receipt_id"] for x in ids}, time.time() + args.timeout)
            th.join(timeout=30)
            missing += out.missing
            rss = workers.peak_rss_mb()
        finally:
            workers.stop()
        for stage, mb in zip(stages, rss, strict=True):
            kind = stage if stage == "ocr" else f"{stage}-{model}"
            rows.append({"run": name, "kind": kind, "model": model, "peak_rss_mb": mb, "n": args.n,
                         "extracted": len(out.latencies), "missing": out.missing, "loadavg_start": load0})
    print(f"{'run':<14} {'worker kind':<16} {'peak RSS MiB':>12} {'receipts':>8} {'load':>5}")
    for x in rows:
        print(f"{x['run']:<14} {x['kind']:<16} {x['peak_rss_mb']!s:>12} {x['extracted']:>8} "
              f"{x['loadavg_start'][0]:>5}")
    res = {"rows": rows, "ocr_backend": settings.ocr_backend,
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_end": loadavg()}}
    write_json(args.out, res)
    return 0 if not missing else 1


if __name__ == "__main__":
    sys.exit(main())
