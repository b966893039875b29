"""The compute bound: load + OCR + extractor + assembly on the same receipts, in a plain loop in one process.

    .venv/bin/python -m bench.bench_bound --n 30 [--model default|rules|DIR] [--out bench/results/bound.json]

The OCR engine is `settings.ocr_backend` (`SOCRATEXT_OCR_BACKEND=pytesseract` for the program per image).

Per-stage CPU milliseconds per receipt, and the bound throughput of this machine if every core ran this
loop (cores / CPU seconds per receipt): the ceiling `bench_pipeline` is compared against. On a shared
machine the neighbours take part of the cores, so `bench_pipeline` also measures `measure_wall`: the same
loop in one process per core, in wall-clock time, right before and after its closed loop.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.report import write_json
from socratext.settings import Settings


def receipt_blobs(n: int, seed: int) -> list[bytes]:
    from training.synth.generator import generate_receipt

    blobs = []
    for i in range(n):
        buf = io.BytesIO()
        generate_receipt(seed + i, degrade=True).image.save(buf, "JPEG", quality=88)
        blobs.append(buf.getvalue())
    return blobs


def measure(n: int, seed: int = 710000, model: str = "rules") -> dict[str, object]:
    """The bound on `n` synthetic receipts: CPU ms per stage and per receipt, and receipts/s on all cores."""
    from socratext.imaging import load_images
    from socratext.pipeline import ExtractStage, OcrStage, load_extractor

    blobs = receipt_blobs(n, seed)
    ocr, extract = OcrStage(), ExtractStage(load_extractor(model))
    stages: dict[str, list[float]] = {"load": [], "ocr": [], "extract": []}

    def cpu() -> float:
        t = os.times()  # this process and its finished children (the tesseract program, if used)
        return t.user + t.system + t.children_user + t.children_system

    ocr(load_images(receipt_blobs(1, seed + 999_999)[0]))  # engine start-up is not per receipt
    load0 = os.getloadavg()
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
    return {"n": n, "model": model, "ocr_backend": type(ocr.ocr).__name__,
            "cpu_ms_per_receipt": per, "cpu_ms_total": round(total_ms, 1),
            "wall_s_one_process": round(wall, 2), "cores": cores,
            "bound_rps_all_cores": round(cores * 1e3 / total_ms, 3),
            "loadavg_start": [round(x, 2) for x in load0],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()]}


_BARRIER: Any = None


def _set_barrier(barrier: Any) -> None:
    global _BARRIER
    _BARRIER = barrier


def _plain_loop(blobs: list[bytes], model: str) -> tuple[float, float]:
    """One process of `measure_wall`: warm up, wait for the others at the barrier, run the loop."""
    from socratext.imaging import load_images
    from socratext.pipeline import ExtractStage, OcrStage, load_extractor

    ocr, extract = OcrStage(), ExtractStage(load_extractor(model))
    ocr(load_images(blobs[0]))
    _BARRIER.wait(timeout=300)
    t0 = time.time()
    for i, data in enumerate(blobs):
        res = ocr(load_images(data))[0]
        extract([res.page], [res.image], [str(i)], [{"path": str(i)}])
    return t0, time.time()


def measure_wall(n: int, seed: int = 710000, model: str = "rules", procs: int = 0) -> dict[str, object]:
    """The bound as wall-clock throughput now: `procs` processes (default one per core) each run the plain
    loop on their share of `n` receipts, started together. On a shared machine this is the ceiling the
    pipeline can reach at the same moment, which the CPU-time bound of `measure` is not."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    procs = min(procs or os.cpu_count() or 1, n)
    blobs = receipt_blobs(n, seed)
    shares = [blobs[i::procs] for i in range(procs)]
    load0 = os.getloadavg()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(procs)
    with ProcessPoolExecutor(procs, mp_context=ctx, initializer=_set_barrier, initargs=(barrier,)) as pool:
        spans = list(pool.map(_plain_loop, shares, [model] * procs))
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    return {"n": n, "procs": procs, "wall_s": round(wall, 2), "rps": round(n / wall, 3),
            "loadavg_start": [round(x, 2) for x in load0],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--seed", type=int, default=710000)
    ap.add_argument("--model", default=Settings().model, help="the service's default unless given")
    ap.add_argument("--out", type=Path, default=Path("bench/results/bound.json"))
    args = ap.parse_args(argv)

    res = measure(args.n, args.seed, args.model)
    per = res["cpu_ms_per_receipt"]
    print(f"{'stage':<10}{'CPU ms/receipt':>16}")
    for k, v in per.items():  # type: ignore[union-attr]
        print(f"{k:<10}{v:>16}")
    print(f"{'total':<10}{res['cpu_ms_total']:>16}")
    print(f"bound on {res['cores']} cores: {res['bound_rps_all_cores']} receipts/s "
          f"(one process, one core: {args.n / res['wall_s_one_process']:.3f} receipts/s wall; "  # type: ignore[operator]
          f"OCR {res['ocr_backend']}, load {res['loadavg_start'][0]})")  # type: ignore[index]
    write_json(args.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
