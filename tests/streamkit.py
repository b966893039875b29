"""Shared helpers for tests that go through the real stack: fresh receipt images, a restartable worker
subprocess, and bounded collection of the events a test produced (filtered by receipt id, so old events
on the shared topics never matter)."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from socratext.cli_stream import consume, start_worker, started, stop_worker
from socratext.settings import Settings

WAIT_S = float(os.environ.get("SOCRATEXT_E2E_WAIT_S", "180"))
NONCE = uuid.uuid4().hex[:8]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_pair() -> int:
    """A free port whose successor is free too (the KRaft controller listens on broker port + 1)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


def receipt_images(n: int, base: int = 7000) -> list[tuple[str, bytes, dict[str, str]]]:
    """(name, JPEG bytes, true fields): synthetic receipts when the generator is there, else drawn ones.

    Fixed seeds keep the content (and so the extraction) reproducible; the run nonce in a JPEG comment
    makes the bytes, hence the content-derived receipt ids, unique to this run."""
    out = []
    try:
        from training.synth.generator import generate_receipt
    except ImportError:
        generate_receipt = None
    for i in range(n):
        if generate_receipt is not None:
            synth = generate_receipt(base + i, degrade=False)
            img, truth = synth.image, dict(synth.fields)
        else:
            total = f"{random.Random(base + i).randrange(100, 9999) / 100:.2f}"
            img = Image.new("RGB", (500, 700), "white")
            draw = ImageDraw.Draw(img)
            for y, line in enumerate(["SUPERMARCHE TEST", "21/11/2026 10:42", "PAIN 1,20",
                                      f"TOTAL {total.replace('.', ',')} EUR", NONCE]):
                draw.text((40, 40 + 60 * y), line, fill="black", font_size=28)
            truth = {"total": total}
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90, comment=f"{NONCE}-{i}".encode())
        out.append((f"e2e-{NONCE}-{i}.jpg", buf.getvalue(), truth))
    return out


class Worker:
    """A worker subprocess (`--stage all|ocr|extract`), restartable after a kill, with health checks."""

    def __init__(self, settings: Settings, log: Path, stage: str = "all", **env: str) -> None:
        self.settings, self.log, self.stage = settings, log, stage
        self.port = free_port()
        self.env = {"SOCRATEXT_REVIEW_THRESHOLD": "1.01", "SOCRATEXT_MODEL": "rules",
                    "SOCRATEXT_METRICS_PORT": str(self.port), "SOCRATEXT_BATCH_WINDOW_S": "0.3",
                    "SOCRATEXT_STATE_DIR": str(settings.state_dir), **env}
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = start_worker(self.settings, self.log, self.stage, self.env)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"{self.stage} worker exited:\n{self.log.read_text()[-3000:]}"
            if self.healthy():
                return
            time.sleep(0.5)
        raise AssertionError(f"{self.stage} worker not healthy in 90 s:\n{self.log.read_text()[-3000:]}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return json.loads(r.read())["status"] == "ok"
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the worker's whole process group (no shutdown, no offset commit) and reap it."""
        assert self.proc is not None and self.proc.poll() is None, f"{self.stage} worker already dead"
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_worker(self.proc)

    def __enter__(self) -> Worker:
        """`with Worker(...) as w:` starts it healthy and stops it however the block ends (fixtures)."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_lines(self, needle: str) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if needle in line]

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return r.read().decode()


def collect(it: Iterator[tuple[str, Any]], settings: Settings, want: set[str], *, topics: set[str],
            until: Any = None, wait_s: float = WAIT_S) -> list[tuple[str, dict[str, Any]]]:
    """Gather events of `want` ids from the started consumer until `until(events)` holds (default: one
    event per wanted id) or the wait is over."""
    names = {t: getattr(settings, f"topic_{t}") for t in topics}
    by_name = {v: k for k, v in names.items()}
    got: list[tuple[str, dict[str, Any]]] = []
    until = until or (lambda evs: {e["receipt_id"] for _, e in evs} >= want)
    deadline = time.monotonic() + wait_s
    for topic, value in it:
        if isinstance(value, dict) and topic in by_name and value.get("receipt_id") in want:
            got.append((by_name[topic], value))
            if until(got):
                break
        if time.monotonic() > deadline:
            break
    return got


def listen(settings: Settings) -> Iterator[tuple[str, Any]]:
    return started(consume(settings, [settings.topic_extracted, settings.topic_review,
                                      settings.topic_deadletter], timeout=WAIT_S))
