"""Model stage: throughput and latency against batch size (measured) and batch window (simulated), on CPU.

    .venv/bin/python -m bench.bench_batching --n 16 [--model default] [--sizes 1,2,4,8,16]
        [--windows 0,0.1,0.25,0.5,1] [--out bench/results/batching.json]

1. OCR `--n` synthetic receipts once (the pages the extract stage receives).
2. For each batch size B, label B pages per call (`extractor.label`, model micro-batch = B windows) over
   `--reps` rounds, interleaved across sizes: median call time, pages/s, CPU per page.
3. The window: a discrete-event simulation of the extract agent's `take(B, within=W)` (Faust's timer
   semantics, see `simulate`) with the measured median call times (linear between measured sizes),
   Poisson arrivals (fixed seed) at two rates: 50 % of the model's own best throughput, and the
   pipeline's 50 % load (half the OCR-bound rate of bench/results/bound.json). It gives p50/p99 of
   arrival → labelled for every (B, W): what the window costs in latency.

No GPU on the machine this was written on; with one, `SOCRATEXT_DEVICE=cuda` measures the same on it.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.report import write_json
from bench.stackrun import loadavg, percentile


def pages_for(n: int, seed: int) -> list:
    from socratext.imaging import load_images
    from socratext.pipeline import OcrStage
    from training.synth.generator import generate_receipt

    ocr = OcrStage()
    pages = []
    for i in range(n):
        buf = io.BytesIO()
        generate_receipt(seed + i, degrade=True).image.save(buf, "JPEG", quality=88)
        pages.append(ocr(load_images(buf.getvalue()))[0].page)
    return pages


def service_time(table: dict[int, float], k: int) -> float:
    """Call time for a batch of `k`, interpolated linearly between the measured sizes."""
    sizes = sorted(table)
    if k in table:
        return table[k]
    lo = max([s for s in sizes if s < k], default=sizes[0])
    hi = min([s for s in sizes if s > k], default=sizes[-1])
    if hi == lo:
        return table[lo] * k / lo
    return table[lo] + (table[hi] - table[lo]) * (k - lo) / (hi - lo)


def simulate(rate: float, size: int, window: float, table: dict[int, float], n: int = 2000,
             seed: int = 0) -> list[float]:
    """Latencies (s) of `n` Poisson arrivals through one consumer looping on `take(size, within=window)`.

    As Faust does it: the consumer waits until `size` events are buffered or `window` seconds have passed
    since it started waiting (a timer, not counted from the first event, so a lone event waits what is left
    of the current window), processes what it has, then waits again. `window` 0 is Faust's "no timeout":
    only full batches are ever returned, which stalls a trickle unless `size` is 1.
    """
    if window <= 0 and size > 1:
        raise ValueError("take(size > 1, within=0) only returns full batches: a trickle would wait forever")
    window = window if window > 0 else math.inf
    rng = random.Random(seed)
    arrivals, t = [], 0.0
    for _ in range(n):
        t += rng.expovariate(rate)
        arrivals.append(t)
    lat: list[float] = []
    t, i = 0.0, 0
    while i < n:
        deadline = t + window
        if i + size <= n and arrivals[i + size - 1] <= deadline:  # the buffer fills before the timer
            j, dispatch = i + size, max(t, arrivals[i + size - 1])
        else:
            j = i
            while j < n and arrivals[j] <= deadline:
                j += 1
            if j == i:  # the timer went off on an empty buffer: wait again (skip the empty windows)
                t += max(1, math.floor((arrivals[i] - t) / window)) * window
                continue
            dispatch = deadline
        done = dispatch + service_time(table, j - i)
        lat.extend(done - a for a in arrivals[i:j])
        t, i = done, j
    return lat


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16, help="distinct receipts (pages)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--sizes", default="1,2,4,8,16")
    ap.add_argument("--windows", default="0.05,0.1,0.25,0.5,1", help="seconds, > 0 (see simulate)")
    ap.add_argument("--reps", type=int, default=3, help="rounds over all pages per batch size")
    ap.add_argument("--seed", type=int, default=730000)
    ap.add_argument("--out", type=Path, default=Path("bench/results/batching.json"))
    args = ap.parse_args(argv)
    from socratext.pipeline import load_extractor

    load0 = loadavg()
    pages = pages_for(args.n, args.seed)
    ext = load_extractor(args.model)
    sizes = [int(s) for s in args.sizes.split(",")]
    windows = [float(w) for w in args.windows.split(",")]
    calls: dict[int, list[float]] = {b: [] for b in sizes}
    cpu: dict[int, list[float]] = {b: [] for b in sizes}
    ext.label(pages[:2], None)  # first call: lazy initialisation, not measured
    for rep in range(args.reps):
        for k in range(len(sizes)):
            b = sizes[(rep + k) % len(sizes)]
            if hasattr(ext, "batch_size"):
                ext.batch_size = b  # windows per forward pass = pages per call (most pages fit one window)
            for start in range(0, len(pages), b):
                batch = [pages[(start + j) % len(pages)] for j in range(b)]
                c0, t0 = time.process_time(), time.perf_counter()
                ext.label(batch, None)
                calls[b].append(time.perf_counter() - t0)
                cpu[b].append((time.process_time() - c0) / b)
    # The median call: on a shared machine the mean mostly measures the neighbours' spikes.
    table = {b: statistics.median(v) for b, v in calls.items()}
    measured = [{"batch_size": b, "calls": len(calls[b]), "call_s": round(table[b], 4),
                 "pages_per_s": round(b / table[b], 2),
                 "cpu_ms_per_page": round(1e3 * sum(cpu[b]) / len(cpu[b]), 1)} for b in sizes]
    best = max(r["pages_per_s"] for r in measured)
    bound_path = Path("bench/results/bound.json")
    pipeline_rps = (0.5 * json.loads(bound_path.read_text())["bound_rps_all_cores"]
                    if bound_path.exists() else 0.5)
    rates = {"model_50pct": 0.5 * best, "pipeline_50pct": pipeline_rps}
    sim = []
    for b in sizes:
        for w in windows:
            row: dict[str, Any] = {"batch_size": b, "window_s": w}
            for name, rate in rates.items():
                lat = simulate(rate, b, w, table)
                row[name] = {"p50_s": round(percentile(lat, 50), 3), "p99_s": round(percentile(lat, 99), 3)}
            sim.append(row)
    device = str(getattr(ext, "device", "cpu"))
    print(f"{args.model} extractor on {device}, {len(pages)} pages, {os.cpu_count()} CPUs, load {load0[0]}")
    print(f"{'batch':>5} {'call s':>8} {'pages/s':>8} {'cpu ms/page':>11}")
    for r in measured:
        print(f"{r['batch_size']:>5} {r['call_s']:>8} {r['pages_per_s']:>8} {r['cpu_ms_per_page']:>11}")
    print(f"simulated take(B, within=W), Poisson arrivals: model 50 % = {rates['model_50pct']:.2f}/s, "
          f"pipeline 50 % = {rates['pipeline_50pct']:.2f}/s; p50 / p99 s")
    print(f"{'batch':>5} {'window':>6} {'model50 p50':>11} {'p99':>7} {'pipe50 p50':>10} {'p99':>7}")
    for r in sim:
        m, p = r["model_50pct"], r["pipeline_50pct"]
        print(f"{r['batch_size']:>5} {r['window_s']:>6} {m['p50_s']:>11} {m['p99_s']:>7} "
              f"{p['p50_s']:>10} {p['p99_s']:>7}")
    res = {"model": args.model, "device": device, "n_pages": len(pages), "reps": args.reps,
           "measured": measured, "rates": rates, "simulated": sim,
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_start": load0,
                       "loadavg_end": loadavg()}}
    write_json(args.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
