"""Does bad input eat the throughput of good receipts? N good receipts alone, then N others with bad
inputs interleaved, through one worker on the real local stack, alternated (A B A B ...) in one run.

    .venv/bin/python -m bench.bench_bad_input [--n 8] [--bad-per-good 1] [--rounds 2]
        [--out bench/results/bad_input.json]

Bad inputs: a file that is not an image, a truncated JPEG, an upload event whose object does not exist
(each dead-lettered with its code) and a value that is not JSON (dead-lettered without an id). Reported per
phase: wall seconds until every good receipt is extracted and every identifiable bad one dead-lettered;
the summary is mixed / alone as a ratio of the means (the worker should spend next to nothing on the bad
ones: the ratio stays near 1). tests/test_bad_input.py checks the codes and stages; this measures time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from bench.report import write_json
from bench.stackrun import RUN, Workers, collect, listen, loadavg, synthetic_files


def bad_inputs(settings: Any, k: int, good: list[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]],
                                                                            list[tuple[str, bytes]]]:
    """`k` bad files (to upload) and `k` bad events (to publish raw): (name, bytes) each."""
    from streams.events import dumps, now_iso

    files, events = [], []
    for i in range(k):
        kind = i % 4
        if kind == 0:
            files.append((f"not-an-image-{i}.jpg", f"{RUN} {i} this is not a picture".encode() * 50))
        elif kind == 1:
            data = good[i % len(good)][1]
            files.append((f"truncated-{i}.jpg", data[: len(data) // 3] + f"{RUN}-{i}".encode()))
        elif kind == 2:
            rid = f"missing-{RUN}-{i}"
            events.append((rid, dumps({"schema_version": 1, "receipt_id": rid, "bucket": settings.s3_bucket,
                                       "key": f"uploads/{rid}.jpg", "uploaded_at": now_iso()})))
        else:
            events.append(("", f"{{not json {RUN} {i}".encode()))
    return files, events


def run_phase(settings: Any, it: Any, good: list[tuple[str, bytes]], bad_files: list[tuple[str, bytes]],
              bad_events: list[tuple[str, bytes]], timeout: float) -> dict[str, Any]:
    """Upload the good files with the bad ones interleaved; wait for every outcome we can name."""
    from socratext.cli_stream import make_producer, upload_files

    producer = make_producer(settings)
    want: set[str] = set()
    t0 = time.time()
    try:
        extras: list[tuple[str, Any]] = [("file", f) for f in bad_files] + [("event", e) for e in bad_events]
        queue: list[tuple[str, Any]] = []
        for i, f in enumerate(good):  # one bad input after each good receipt, the rest at the end
            queue += [("good", f), *extras[i:i + 1]]
        queue += extras[len(good):]
        for kind, item in queue:
            if kind == "event":
                rid, value = item
                producer.send(settings.topic_uploaded, key=rid.encode() or None, value=value)
                if rid:
                    want.add(rid)
            else:
                want |= {r["receipt_id"] for r in upload_files(settings, [item], producer=producer)}
        producer.flush(30)
    finally:
        producer.close(timeout=10)
    out = collect(it, settings, want, time.time() + timeout)
    wall = time.time() - t0
    return {"good": len(good), "bad_files": len(bad_files), "bad_events": len(bad_events),
            "extracted": len(out.latencies), "deadletter": out.deadletter, "missing": out.missing,
            "wall_s": round(wall, 2), "loadavg_start": loadavg()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8, help="good receipts per phase")
    ap.add_argument("--bad-per-good", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=720000)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--out", type=Path, default=Path("bench/results/bad_input.json"))
    args = ap.parse_args(argv)
    from socratext import stack
    from socratext.settings import get_settings

    settings = get_settings()
    stack.up(settings)
    workers = Workers(settings, ["all"]).start()
    phases: list[dict[str, Any]] = []
    try:
        it = listen(settings, timeout=args.timeout * 2 * args.rounds + 120)
        run_phase(settings, it, synthetic_files(2, args.seed - 100, "warm"), [], [], args.timeout)
        for r in range(args.rounds):
            for mixed in (False, True):
                good = synthetic_files(args.n, args.seed + 1000 * (2 * r + mixed), f"r{r}-{mixed}")
                files, events = (bad_inputs(settings, round(args.n * args.bad_per_good), good) if mixed
                                 else ([], []))
                res = run_phase(settings, it, good, files, events, args.timeout)
                res["phase"], res["order"] = ("mixed" if mixed else "alone"), len(phases) + 1
                n_bad = len(files) + len(events)
                print(f"{res['order']}: {res['phase']:<6} {res['good']} good + {n_bad} bad: "
                      f"{res['wall_s']} s, extracted {res['extracted']}, dead {res['deadletter']}, "
                      f"missing {res['missing']}", flush=True)
                phases.append(res)
    finally:
        workers.stop()
    if any(p["missing"] for p in phases):
        print("some outcomes never arrived: the run does not count")
        return 1
    alone = statistics.mean(p["wall_s"] for p in phases if p["phase"] == "alone")
    mixed_s = statistics.mean(p["wall_s"] for p in phases if p["phase"] == "mixed")
    summary = {"alone_wall_s": round(alone, 2), "mixed_wall_s": round(mixed_s, 2),
               "mixed_over_alone": round(mixed_s / alone, 3)}
    print(f"good receipts alone {alone:.1f} s, among bad inputs {mixed_s:.1f} s: ratio "
          f"{summary['mixed_over_alone']}")
    write_json(args.out, {"bench": f"bench.bench_bad_input --n {args.n} --bad-per-good {args.bad_per_good} "
                                   f"--rounds {args.rounds}", "summary": summary, "phases": phases})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
