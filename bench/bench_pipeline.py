"""N receipts through the real local stack: upload → receipts.extracted, throughput and latency, against the
compute bound measured in the same run.

    .venv/bin/python -m bench.bench_pipeline --n 30 [--mode both|closed|open] [--rate R] [--workers 1]
        [--ocr-concurrency 0] [--ocr-backend B] [--env SOCRATEXT_X=V] [--bound-n 8] [--no-wall-bound]
        [--out bench/results/pipeline.json]

1. The bound (`bench_bound.measure`, `--bound-n` receipts in this process): CPU per receipt, and the
   receipts/s all cores would give if they did nothing else. `--bound-n 0` reads bench/results/bound.json.
   Because neighbours on a shared machine take part of the cores, the plain loop is also run in one
   process per core in wall-clock time right before and after the closed loop (`bench_bound.measure_wall`,
   N receipts each; `--no-wall-bound` skips it): `ratio_to_wall_bound` compares like with like.
2. `--workers` worker processes (stage "all", each with its own metrics port) join one consumer group;
   the uploaded and ocr topics have several partitions, so two workers share the work (the scale bench).
   A warm-up receipt per OCR thread is put through first (model load, group join, engine start-up).
3. Closed loop: N receipts uploaded at once (the queue is full from the start): the maximum throughput.
4. Open loop: N more receipts uploaded one every 1/R s on a fixed schedule, R = `--rate` or, by default,
   50 % of the closed loop's throughput (of the bound without a closed loop): latency under normal load.

Latency is per receipt from its upload event's `uploaded_at` to the arrival of its extracted event here.
Each phase also reports the CPU seconds per receipt of every process involved (workers, Kafka, MinIO,
this client): `cpu_efficiency_vs_bound` = the bound's CPU per receipt / the workers', which the
neighbours do not disturb (1.0: the streaming machinery costs no CPU beyond the plain loop).
Targets the output is checked against: closed-loop throughput ≥ 0.9 × bound; open-loop p99 ≤ 2 × one
receipt's compute time (the bound's CPU per receipt) + the batch window, and the same with one receipt's
wall time under the current load (`p99_target_now_s`, from the wall-clock plain loop). The machine is
shared, so the load average is recorded at each step; compare runs by their ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bench.report import write_json
from bench.stackrun import (
    CpuMeter,
    Workers,
    collect,
    latency_stats,
    listen,
    loadavg,
    stack_pids,
    steady_rps,
    synthetic_files,
    upload_paced,
)
from socratext.settings import Settings


def phase(settings: Any, it: Any, files: list[tuple[str, bytes]], rate: float | None,
          timeout: float, pids: dict[str, int] | None = None) -> dict[str, Any]:
    """Upload `files` (closed loop when `rate` is None) and wait for all of them; the phase's figures,
    with the CPU seconds each process of the pipeline (`pids`, and this client) spent per receipt."""
    load0 = loadavg()
    meter = CpuMeter(pids or {}).start()
    t0 = time.time()
    th, rows, ids_known = upload_paced(settings, files, rate)
    ids_known.wait()
    out = collect(it, settings, {r["receipt_id"] for r in rows}, time.time() + timeout)
    th.join(timeout=30)
    wall = (max(out.ends) if out.ends else time.time()) - t0
    cpu = meter.stop()
    n_ok = len(out.latencies)
    return {"cpu_s_per_receipt": {k: round(v / max(n_ok, 1), 3) for k, v in cpu.items() if v is not None},
            "n": len(files), "offered_rps": round(rate, 3) if rate else None, "extracted": n_ok,
            "deadletter": out.deadletter, "missing": out.missing, "wall_s": round(wall, 2),
            "throughput_rps": round(n_ok / wall, 3) if wall > 0 and n_ok else None,
            "steady_rps": round(r, 3) if (r := steady_rps(out.ends)) else None,
            "latency_s": latency_stats(out.latencies), "loadavg_start": load0, "loadavg_end": loadavg()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench import bench_bound
    from socratext import stack
    from socratext.settings import get_settings

    if args.ocr_backend:  # for the in-run bound as well as the workers
        os.environ["SOCRATEXT_OCR_BACKEND"] = args.ocr_backend
    settings = get_settings()
    stack.up(settings)
    if args.bound_n > 0:
        bound = bench_bound.measure(args.bound_n, args.seed, args.model)  # the closed loop's receipts
    else:
        bound = json.loads(Path("bench/results/bound.json").read_text())
    bound_rps = float(bound["bound_rps_all_cores"])
    env = {"SOCRATEXT_MODEL": args.model, "SOCRATEXT_BATCH_WINDOW_S": str(args.batch_window)}
    if args.ocr_concurrency:
        env["SOCRATEXT_OCR_CONCURRENCY"] = str(args.ocr_concurrency)
    env.update(dict(kv.split("=", 1) for kv in args.env))
    workers = Workers(settings, ["all"] * args.workers, env).start()
    res: dict[str, Any] = {"n": args.n, "workers": args.workers, "stage": "all", "model": args.model,
                           "ocr_backend": args.ocr_backend or settings.ocr_backend,
                           "ocr_concurrency": args.ocr_concurrency or os.cpu_count(),
                           "batch_window_s": args.batch_window, "worker_env": env, "bound": bound}
    try:
        it = listen(settings, timeout=args.timeout)
        pids = {**workers.pids(), **stack_pids(settings)}
        threads = (args.ocr_concurrency or os.cpu_count() or 1) * args.workers
        warm_files = synthetic_files(threads, args.seed + 10_000_000, "warm")
        warm = phase(settings, it, warm_files, None, args.timeout)
        res["warmup"] = {"n": warm["n"], "missing": warm["missing"]}
        closed_rps = None
        if args.mode in ("closed", "both"):
            walls = []
            if args.wall_bound:
                walls.append(bench_bound.measure_wall(args.n, args.seed, args.model))
            res["closed"] = closed = phase(settings, it, synthetic_files(args.n, args.seed, "closed"), None,
                                           args.timeout, pids)
            if args.wall_bound:
                walls.append(bench_bound.measure_wall(args.n, args.seed, args.model))
                wall_rps = sum(float(w["rps"]) for w in walls) / len(walls)
                closed["wall_bound"] = {"before": walls[0], "after": walls[1], "mean_rps": round(wall_rps, 3)}
                closed["ratio_to_wall_bound"] = (round(closed["throughput_rps"] / wall_rps, 3)
                                                 if closed["throughput_rps"] else None)
                closed["steady_ratio_to_wall_bound"] = (round(closed["steady_rps"] / wall_rps, 3)
                                                        if closed["steady_rps"] else None)
            closed_rps = closed["throughput_rps"]
            closed["ratio_to_bound"] = round(closed_rps / bound_rps, 3) if closed_rps else None
            # Robust to the neighbours: the bound's CPU per receipt over what the workers spent per receipt
            # (1.0 = the pipeline adds no CPU of its own; what is left of the gap is idle cores).
            worker_cpu = sum(v for k, v in closed["cpu_s_per_receipt"].items() if k.startswith("worker"))
            closed["cpu_efficiency_vs_bound"] = (round(float(bound["cpu_ms_total"]) / 1e3 / worker_cpu, 3)
                                                 if worker_cpu else None)
        if args.mode in ("open", "both"):
            rate = args.rate or 0.5 * float(closed_rps or bound_rps)
            open_files = synthetic_files(args.n, args.seed + 100_000, "open")
            res["open"] = opened = phase(settings, it, open_files, rate, args.timeout, pids)
            one = float(bound["cpu_ms_total"]) / 1e3
            target = 2 * one + args.batch_window
            p99 = opened["latency_s"].get("p99")
            opened["p99_target_s"] = round(target, 2)
            opened["p99_over_target"] = round(p99 / target, 2) if p99 is not None else None
            wall_bound = res.get("closed", {}).get("wall_bound")
            if wall_bound and p99 is not None:
                # The same target with one receipt's compute time as it is now, on this shared machine:
                # the plain loop's wall seconds per receipt in each of its processes.
                now_one = wall_bound["before"]["procs"] / wall_bound["mean_rps"]
                opened["p99_target_now_s"] = round(2 * now_one + args.batch_window, 2)
                opened["p99_over_target_now"] = round(p99 / opened["p99_target_now_s"], 2)
        res["worker_peak_rss_mb"] = workers.peak_rss_mb()
    finally:
        workers.stop()
    res["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_end": loadavg()}
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30, help="receipts per phase")
    ap.add_argument("--mode", choices=("both", "closed", "open"), default="both")
    ap.add_argument("--rate", type=float, default=0.0, help="open-loop receipts/s (default: 50 %% of max)")
    ap.add_argument("--workers", type=int, default=1, help="worker processes (stage all)")
    ap.add_argument("--ocr-concurrency", type=int, default=0, help="receipts OCR'd at once per worker")
    ap.add_argument("--ocr-backend", default="", help="pytesseract|tesserocr (default: the setting)")
    ap.add_argument("--env", action="append", default=[], metavar="SOCRATEXT_X=V",
                    help="more worker settings (repeatable), e.g. SOCRATEXT_WORKER_THREADS=3")
    ap.add_argument("--model", default=Settings().model, help="the service's default unless given")
    ap.add_argument("--batch-window", type=float, default=0.5)
    ap.add_argument("--bound-n", type=int, default=8, help="receipts for the in-run bound (0: bound.json)")
    ap.add_argument("--no-wall-bound", dest="wall_bound", action="store_false",
                    help="skip the plain loop on all cores (wall clock) before and after the closed loop")
    ap.add_argument("--seed", type=int, default=700000)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--out", type=Path, default=Path("bench/results/pipeline.json"))
    args = ap.parse_args(argv)
    res = run(args)
    bound = res["bound"]
    print(f"bound: {bound['cpu_ms_total']} CPU ms/receipt → {bound['bound_rps_all_cores']} rec/s on "
          f"{bound['cores']} cores (OCR {bound.get('ocr_backend', '?')})")
    print(f"{'phase':>7} {'offered':>7} {'n':>4} {'ok':>4} {'dead':>4} {'miss':>4} {'wall s':>7} "
          f"{'rec/s':>6} {'/bound':>6} {'p50 s':>6} {'p95 s':>6} {'p99 s':>6} {'load':>5}")
    missing = 0
    for name in ("closed", "open"):
        r = res.get(name)
        if not isinstance(r, dict):
            continue
        lat = r["latency_s"]
        missing += r["missing"]
        rps = r["throughput_rps"]
        ratio = round(rps / bound["bound_rps_all_cores"], 2) if rps else "-"
        print(f"{name:>7} {r['offered_rps'] or 'max'!s:>7} {r['n']:>4} {r['extracted']:>4} "
              f"{r['deadletter']:>4} {r['missing']:>4} {r['wall_s']:>7} {rps!s:>6} {ratio!s:>6} "
              f"{lat.get('p50', '-')!s:>6} {lat.get('p95', '-')!s:>6} {lat.get('p99', '-')!s:>6} "
              f"{r['loadavg_start'][0]:>5}")
    if isinstance(res.get("open"), dict):
        o = res["open"]
        print(f"open-loop p99 target (2 x one receipt's compute + window): {o['p99_target_s']} s "
              f"→ p99/target {o['p99_over_target']}")
        if "p99_target_now_s" in o:
            print(f"  with one receipt's wall time under the current load (plain loop): "
                  f"{o['p99_target_now_s']} s → p99/target {o['p99_over_target_now']}")
    if isinstance(res.get("closed"), dict):
        c = res["closed"]
        if "wall_bound" in c:
            wb = c["wall_bound"]
            print(f"plain loop on all cores now (wall clock): {wb['before']['rps']} / "
                  f"{wb['after']['rps']} rec/s before / after → closed loop / wall bound = "
                  f"{c['ratio_to_wall_bound']} (steady state, 10-90 % of arrivals: "
                  f"{c['steady_rps']} rec/s → {c['steady_ratio_to_wall_bound']})")
        print(f"closed loop CPU s/receipt: {c['cpu_s_per_receipt']}; bound CPU / worker CPU = "
              f"{c['cpu_efficiency_vs_bound']}")
    print(f"worker peak RSS MiB: {res['worker_peak_rss_mb']}")
    write_json(args.out, res)
    return 0 if not missing else 1


if __name__ == "__main__":
    sys.exit(main())
