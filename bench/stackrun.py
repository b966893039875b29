"""What the stack benchmarks share: synthetic uploads, worker processes with health checks and peak RSS,
collecting extracted events with their latency from the upload event's `uploaded_at`."""

from __future__ import annotations

import io
import json
import math
import os
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

RUN = uuid.uuid4().hex[:8]  # in every JPEG's comment: content-derived receipt ids are unique to this run


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0–100) of a non-empty list: the smallest value with at least q % of
    the values at or below it."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s) - 1e-9) - 1))
    return s[k]


def steady_rps(ends: list[float], trim: float = 0.1) -> float | None:
    """Receipts/s between the first and the last `trim` share of the arrivals: the rate once the run is
    under way. A closed loop's start (consumer fetch, first batches) and end (the last receipts wait for
    the batch window, one core idles while the other finishes) weigh on a short run's average."""
    t = sorted(ends)
    k = int(len(t) * trim)
    lo, hi = k, len(t) - 1 - k
    if hi - lo < 2 or t[hi] <= t[lo]:
        return None
    return (hi - lo) / (t[hi] - t[lo])


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def synthetic_files(n: int, seed: int, tag: str = "") -> list[tuple[str, bytes]]:
    """`n` degraded synthetic receipts as JPEG files, distinct per run (`RUN`) and per `tag`."""
    from training.synth.generator import generate_receipt

    files = []
    for i in range(n):
        buf = io.BytesIO()
        generate_receipt(seed + i, degrade=True).image.save(buf, "JPEG", quality=88,
                                                            comment=f"{RUN}-{tag}-{i}".encode())
        files.append((f"bench-{seed + i}.jpg", buf.getvalue()))
    return files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (VmHWM) in MiB, from /proc (None where there is no /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system, its waited-for children included) the process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


def stack_pids(settings: Any) -> dict[str, int]:
    """The running stack's processes (Kafka, MinIO) by name, from their pid files."""
    out = {}
    for name in ("kafka", "minio"):
        try:
            out[name] = int((Path(settings.state_dir) / f"{name}.pid").read_text().strip())
        except (OSError, ValueError):
            pass
    return out


class CpuMeter:
    """CPU seconds used by named processes (and this one) between `start()` and `stop()`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.t0: dict[str, float | None] = {}

    def _now(self) -> dict[str, float | None]:
        t = os.times()
        return {**{k: proc_cpu_s(p) for k, p in self.pids.items()}, "bench_client": t.user + t.system}

    def start(self) -> CpuMeter:
        self.t0 = self._now()
        return self

    def stop(self) -> dict[str, float | None]:
        t1 = self._now()
        out: dict[str, float | None] = {}
        for k, v in self.t0.items():
            end = t1.get(k)
            out[k] = round(end - v, 2) if v is not None and end is not None else None
        return out


@dataclass
class Workers:
    """Worker processes (`python -m streams.worker`), each on its own metrics port, started healthy."""

    settings: Any
    stages: list[str]
    env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)

    def start(self, timeout: float = 180.0) -> Workers:
        from socratext.cli_stream import start_worker

        for i, stage in enumerate(self.stages):
            port = free_port()
            env = {"SOCRATEXT_METRICS_PORT": str(port), "SOCRATEXT_STATE_DIR": str(self.settings.state_dir),
                   **self.env}
            log = Path(self.settings.state_dir) / f"bench-worker-{stage}-{i}.log"
            self.procs.append(start_worker(self.settings, log, stage, env))
            self.ports.append(port)
        deadline = time.monotonic() + timeout
        for proc, port in zip(self.procs, self.ports, strict=True):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited with {proc.returncode}; see {self.settings.state_dir}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                        if json.loads(r.read())["status"] == "ok":
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker not healthy in {timeout:.0f} s")
                time.sleep(0.5)
        return self

    def pids(self) -> dict[str, int]:
        return {f"worker{i}-{stage}": p.pid
                for i, (stage, p) in enumerate(zip(self.stages, self.procs, strict=True))}

    def peak_rss_mb(self) -> list[float | None]:
        return [peak_rss_mb(p.pid) for p in self.procs]

    def stop(self) -> None:
        from socratext.cli_stream import stop_worker

        for p in self.procs:
            stop_worker(p)


def listen(settings: Any, timeout: float) -> Iterator[tuple[str, Any]]:
    """A started consumer of the extracted and dead-letter topics (positions fixed before returning)."""
    from socratext.cli_stream import consume, started

    return started(consume(settings, [settings.topic_extracted, settings.topic_deadletter], timeout=timeout))


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)  # s, upload event's uploaded_at → event seen here
    ends: list[float] = field(default_factory=list)
    deadletter: int = 0
    missing: int = 0


def collect(it: Iterator[tuple[str, Any]], settings: Any, want: set[str], deadline: float) -> Outcome:
    """Wait for one extracted or dead-letter event per wanted receipt id (or the deadline)."""
    out = Outcome()
    want = set(want)
    if want:
        for topic, value in it:
            if isinstance(value, dict) and value.get("receipt_id") in want:
                want.discard(value["receipt_id"])
                now = time.time()
                if topic == settings.topic_deadletter:
                    out.deadletter += 1
                else:
                    up = datetime.fromisoformat(value["uploaded_at"].replace("Z", "+00:00")).timestamp()
                    out.latencies.append(now - up)
                    out.ends.append(now)
            if not want or time.time() > deadline:
                break
    out.missing = len(want)
    return out


def upload_paced(settings: Any, files: list[tuple[str, bytes]], rate: float | None,
                 ) -> tuple[threading.Thread, list[dict[str, str]], threading.Event]:
    """Upload `files` from a thread: all at once (`rate` None, closed loop) or one every 1/rate seconds
    on a fixed schedule (open loop: late uploads do not push the later ones back). Returns the thread,
    the list it fills with upload rows, and an event set once the receipt ids are all known."""
    from socratext.cli_stream import make_producer, upload_files

    rows: list[dict[str, str]] = []
    ids_known = threading.Event()

    def run() -> None:
        from socratext.pipeline import receipt_id_for

        # The ids are content hashes: known before uploading, so the collector can start at once.
        rows.extend({"receipt_id": receipt_id_for(data)} for _, data in files)
        ids_known.set()
        producer = make_producer(settings)
        try:
            if rate is None:
                upload_files(settings, files, producer=producer)
                return
            t0 = time.monotonic()
            for i, f in enumerate(files):
                pause = t0 + i / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                upload_files(settings, [f], producer=producer)
        finally:
            producer.close(timeout=10)

    th = threading.Thread(target=run, name="bench-upload", daemon=True)
    th.start()
    return th, rows, ids_known


def latency_stats(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {}
    return {**{f"p{q}": round(percentile(latencies, q), 2) for q in (50, 95, 99)},
            "mean": round(sum(latencies) / len(latencies), 2), "max": round(max(latencies), 2)}
