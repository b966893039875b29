"""N receipts through the real local stack: upload → receipts.extracted, throughput and latency.

    .venv/bin/python -m bench.bench_pipeline --n 100 [--out bench/results/pipeline.json]

Starts the stack (idempotent) and one worker process, uploads N distinct synthetic receipts at once
(closed loop: the queue is full from the start), and measures, per receipt, the time from the upload
event's `uploaded_at` to the arrival of its extracted event. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0–100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def synthetic_files(n: int, seed: int) -> list[tuple[str, bytes]]:
    from training.synth.generator import generate_receipt

    files = []
    for i in range(n):
        buf = io.BytesIO()
        generate_receipt(seed + i, degrade=True).image.save(buf, "JPEG", quality=88)
        files.append((f"bench-{seed + i}.jpg", buf.getvalue()))
    return files


def run(n: int, seed: int, timeout: float) -> dict[str, object]:
    from socratext import stack
    from socratext.cli_stream import consume, start_worker, started, stop_worker, upload_files
    from socratext.settings import get_settings

    settings = get_settings()
    stack.up(settings)
    files = synthetic_files(n, seed)
    log_path = Path(settings.state_dir) / "bench-worker.log"
    proc = start_worker(settings, log_path, stage="all")
    try:
        topics = [settings.topic_extracted, settings.topic_deadletter]
        it = started(consume(settings, topics, timeout=timeout))
        # Warm-up: one receipt through the pipeline so start-up (model load, group join) is not measured.
        warm = upload_files(settings, synthetic_files(1, seed + 10_000_000))
        for _, value in it:
            if isinstance(value, dict) and value.get("receipt_id") == warm[0]["receipt_id"]:
                break
        t0 = time.time()
        rows = upload_files(settings, files)
        want = {r["receipt_id"] for r in rows}
        latencies: list[float] = []
        failed = 0
        ends: list[float] = []
        for topic, value in it:
            if not isinstance(value, dict) or value.get("receipt_id") not in want:
                continue
            want.discard(value["receipt_id"])
            now = time.time()
            if topic == settings.topic_deadletter:
                failed += 1
            else:
                up = datetime.fromisoformat(value["uploaded_at"].replace("Z", "+00:00")).timestamp()
                latencies.append(now - up)
                ends.append(now)
            if not want:
                break
        wall = (max(ends) if ends else time.time()) - t0
    finally:
        stop_worker(proc)
    return {
        "n": n, "stage": "all", "extracted": len(latencies), "deadletter": failed, "missing": len(want),
        "wall_s": round(wall, 2), "throughput_rps": round(len(latencies) / wall, 3) if wall > 0 else None,
        "latency_s": {**{f"p{q}": round(percentile(latencies, q), 2) for q in (50, 95, 99)},
                      "mean": round(statistics.mean(latencies), 2)} if latencies else {},
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=700000)
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--out", type=Path, default=Path("bench/results/pipeline.json"))
    args = ap.parse_args(argv)
    res = run(args.n, args.seed, args.timeout)
    lat = res["latency_s"]
    print(f"{'receipts':>9} {'extracted':>9} {'dead':>5} {'missing':>7} {'wall s':>8} {'rec/s':>7} "
          f"{'p50 s':>7} {'p95 s':>7} {'p99 s':>7}")
    print(f"{res['n']:>9} {res['extracted']:>9} {res['deadletter']:>5} {res['missing']:>7} "
          f"{res['wall_s']:>8} "
          f"{res['throughput_rps']!s:>7} {lat.get('p50', '-')!s:>7} {lat.get('p95', '-')!s:>7} "
          f"{lat.get('p99', '-')!s:>7}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))
    return 0 if not res["missing"] else 1


if __name__ == "__main__":
    sys.exit(main())
