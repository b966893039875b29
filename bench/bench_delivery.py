"""What exactly-once delivery costs: the pipeline bench's closed loop with `SOCRATEXT_DELIVERY` =
at_least_once and exactly_once, alternated in one run (A B A B ...), on the real local stack.

    .venv/bin/python -m bench.bench_delivery [--n 30] [--rounds 2] [--ocr-backend B] [--model M]
        [--out bench/results/delivery.json]

Each run is `bench.bench_pipeline`'s closed loop (N receipts uploaded at once, one worker of stage "all")
with its own worker process. Reported per variant: throughput (receipts/s), the workers' CPU seconds per
receipt (robust to the neighbours on a shared machine) and Kafka's; the summary gives exactly_once /
at_least_once as ratios of the means, which is what to compare (these machines are noisy). The issue's
bar: exactly once is the default if it costs at most 10 % of throughput.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from bench.report import write_json

VARIANTS = ("at_least_once", "exactly_once")


def pipeline_args(args: argparse.Namespace, delivery: str) -> argparse.Namespace:
    """bench_pipeline's arguments for one closed-loop run with this delivery."""
    return argparse.Namespace(
        n=args.n, mode="closed", rate=0.0, workers=1, ocr_concurrency=0, ocr_backend=args.ocr_backend,
        env=[f"SOCRATEXT_DELIVERY={delivery}"], model=args.model, batch_window=0.5, bound_n=args.bound_n,
        wall_bound=False, seed=args.seed, timeout=900.0, out=None)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    by: dict[str, dict[str, list[float]]] = {v: {"rps": [], "worker_cpu": [], "kafka_cpu": []}
                                             for v in VARIANTS}
    for r in runs:
        c = r["closed"]
        by[r["delivery"]]["rps"].append(float(c["throughput_rps"]))
        cpu = c["cpu_s_per_receipt"]
        by[r["delivery"]]["worker_cpu"].append(sum(v for k, v in cpu.items() if k.startswith("worker")))
        by[r["delivery"]]["kafka_cpu"].append(float(cpu.get("kafka", 0.0)))
    means = {v: {k: round(statistics.mean(xs), 4) for k, xs in d.items() if xs} for v, d in by.items()}
    a, e = means["at_least_once"], means["exactly_once"]
    return {"mean": means,
            "exactly_once_over_at_least_once": {
                "throughput": round(e["rps"] / a["rps"], 3),
                "worker_cpu_s_per_receipt": round(e["worker_cpu"] / a["worker_cpu"], 3),
                "kafka_cpu_s_per_receipt": (round(e["kafka_cpu"] / a["kafka_cpu"], 3) if a["kafka_cpu"]
                                            else None)}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30, help="receipts per closed-loop run")
    ap.add_argument("--rounds", type=int, default=2, help="A B pairs, alternated")
    ap.add_argument("--ocr-backend", default="", help="default: the setting (ppocr)")
    ap.add_argument("--model", default="", help="default: the service's default")
    ap.add_argument("--bound-n", type=int, default=0, help="receipts for an in-run bound (0: bound.json)")
    ap.add_argument("--seed", type=int, default=710000)
    ap.add_argument("--out", type=Path, default=Path("bench/results/delivery.json"))
    args = ap.parse_args(argv)
    from bench import bench_pipeline
    from socratext.settings import Settings

    args.model = args.model or Settings().model
    runs = []
    for _ in range(args.rounds):
        for delivery in VARIANTS:
            res = bench_pipeline.run(pipeline_args(args, delivery))
            res["delivery"], res["order"] = delivery, len(runs) + 1
            c = res["closed"]
            print(f"run {res['order']}: {delivery:<14} {c['throughput_rps']} rec/s, missing {c['missing']}, "
                  f"CPU s/receipt {c['cpu_s_per_receipt']}", flush=True)
            if c["missing"]:
                print(f"  {c['missing']} receipts missing: the run does not count", file=sys.stderr)
                return 1
            runs.append(res)
    summary = summarise(runs)
    print(f"\n{'delivery':<14} {'rec/s':>7} {'worker CPU s/rec':>17} {'kafka CPU s/rec':>16}")
    for v in VARIANTS:
        m = summary["mean"][v]
        print(f"{v:<14} {m['rps']:>7} {m['worker_cpu']:>17} {m['kafka_cpu']:>16}")
    print(f"exactly_once / at_least_once: {json.dumps(summary['exactly_once_over_at_least_once'])}")
    write_json(args.out, {"bench": f"bench.bench_delivery --n {args.n} --rounds {args.rounds}"
                                   f"{' --ocr-backend ' + args.ocr_backend if args.ocr_backend else ''}",
                          "summary": summary, "runs": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
