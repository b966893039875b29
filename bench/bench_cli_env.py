"""`socratext extract` as a user starts it: CPU and wall time from a plain shell against the same command with
`OMP_THREAD_LIMIT=1` exported, for one or more checkouts (e.g. before and after the OpenMP fix).

    python -m bench.bench_cli_env --n 12 --tree /tmp/before --tree . --out bench/results/cli_env.json

Each run is a fresh `python -m socratext.cli extract --no-progress` process over the first `--n` SROIE scans
(the bundled model with the rules unless `--model`); its user and system CPU come from `wait4`, so they count
every thread of the process (OpenMP's spinning ones included). The plain environment has no `OMP_*`
variable at all, as a new user's shell. The load average is recorded because the dev box is shared: wall
time is only comparable between runs made under the same load, CPU time much more so.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.report import write_json
from bench.stackrun import loadavg
from socratext.settings import REPO_ROOT

SROIE_IMG = REPO_ROOT.parent / "shared" / "data" / "sroie" / "img"


def run_cli(tree: Path, files: list[Path], omp_thread_limit: str | None, model: str,
            extra: list[str] | None = None) -> dict[str, Any]:
    """One CLI run from `tree` (its own `socratext` package first on the path); CPU and wall seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    if omp_thread_limit is not None:
        env["OMP_THREAD_LIMIT"] = omp_thread_limit
    env["PYTHONPATH"] = str(tree)
    cmd = [sys.executable, "-m", "socratext.cli", "extract", "--no-progress", "--model", model,
           *(extra or []), *map(str, files)]
    load0 = loadavg()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    stamps = [time.perf_counter() - t0 for line in (proc.stdout or []) if line.strip()]  # per JSON line
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    # the steady rate, over the second half of the lines: without the start-up (imports, model load) that
    # every run pays once, and without the burst of receipts OCR'd while the model was loading
    mid = len(stamps) // 2
    span = stamps[-1] - stamps[mid] if len(stamps) > 2 else 0.0
    steady = (len(stamps) - 1 - mid) / span if span > 0 else None
    return {"tree": str(tree), "omp_thread_limit": omp_thread_limit, "extra_args": extra or [],
            "exit_code": proc.returncode, "receipts": len(stamps), "wall_s": round(wall, 2),
            "first_line_s": round(stamps[0], 2) if stamps else None,
            "steady_receipts_per_s": round(steady, 3) if steady else None,
            "user_s": round(ru.ru_utime, 2), "sys_s": round(ru.ru_stime, 2),
            "cpu_s": round(ru.ru_utime + ru.ru_stime, 2), "loadavg_start": load0, "loadavg_end": loadavg()}


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'tree':<28} {'OMP_THREAD_LIMIT':>16} {'args':>8} {'wall s':>8} {'user s':>8} {'sys s':>8} " \
           f"{'cpu s':>8} {'load':>6}"
    out = [head]
    for r in rows:
        out.append(f"{Path(r['tree']).name[:28]:<28} {r['omp_thread_limit'] or '(unset)':>16} "
                   f"{' '.join(r['extra_args']) or '-':>8} {r['wall_s']:>8} {r['user_s']:>8} {r['sys_s']:>8} "
                   f"{r['cpu_s']:>8} {r['loadavg_start'][0]:>6}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=12, help="SROIE scans (the first n by name)")
    ap.add_argument("--tree", type=Path, action="append", help="checkout to run (repeatable; default: this)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--extra", default="", help="extra extract arguments, e.g. '-j 1'")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "cli_env.json")
    args = ap.parse_args(argv)
    files = sorted(SROIE_IMG.glob("*.jpg"))[: args.n]
    if len(files) < args.n:
        raise SystemExit(f"need {args.n} scans in {SROIE_IMG}, found {len(files)}")
    extra = args.extra.split() if args.extra else []
    rows = []
    for tree in args.tree or [REPO_ROOT]:
        for limit in (None, "1"):
            rows.append(run_cli(tree.resolve(), files, limit, args.model, extra))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))
    write_json(args.out, {"bench": "cli_env", "n": args.n, "model": args.model, "cores": os.cpu_count(),
                          "platform": platform.platform(), "python": platform.python_version(),
                          "runs": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
