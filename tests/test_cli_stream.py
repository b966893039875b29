"""The streaming commands as a user types them, each a real `socratext` subprocess, on a stack of their own
(free ports, a temporary state dir; configured through the environment only, as a user would):
`stack up` / `stack status` / `worker` / `upload` / `tail` / `demo --down` / `stack down`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest_stack import _installed, skip_unless_required
from tests.streamkit import free_port, free_port_pair

pytestmark = [pytest.mark.stack, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "socratext" / "samples"
SOCRATEXT = [sys.executable, "-m", "socratext"]


def _run(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SOCRATEXT, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


def _ready(table: str) -> dict[str, bool]:
    """`stack status`'s table → service: ready (its second column, yes/no)."""
    out = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) > 2 and cells[0] in ("kafka", "minio"):
            out[cells[0]] = cells[1] == "yes"
    return out


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return json.loads(r.read())["status"] == "ok"
    except OSError:
        return False


def test_the_streaming_commands_from_stack_up_to_stack_down(tmp_path: Path) -> None:
    missing = _installed()
    if missing:
        skip_unless_required(f"local stack not installed ({missing})")
    metrics_port = free_port()
    env = {**os.environ, "SOCRATEXT_STATE_DIR": str(tmp_path / "state"),
           "SOCRATEXT_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port_pair()}",
           "SOCRATEXT_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}",
           "SOCRATEXT_METRICS_PORT": str(metrics_port), "SOCRATEXT_MODEL": "rules"}
    worker = None
    try:
        up = _run(["stack", "up"], env)
        assert up.returncode == 0, up.stdout + up.stderr
        status = _run(["stack", "status"], env)
        assert status.returncode == 0, status.stderr
        assert _ready(status.stdout) == {"kafka": True, "minio": True}, status.stdout

        log = (tmp_path / "worker.log").open("w")
        worker = subprocess.Popen([*SOCRATEXT, "worker", "--stage", "all"], env=env, cwd=REPO, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while not _healthy(metrics_port):
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the worker did not become healthy"
            time.sleep(0.5)

        tail = subprocess.Popen([*SOCRATEXT, "tail", "--topic", "extracted", "-n", "1", "--timeout", "150"],
                                env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3)  # tail has fixed its positions (new events only)
        up_res = _run(["upload", str(SAMPLES / "sample_01.jpg")], env)
        assert up_res.returncode == 0, up_res.stderr
        rid = up_res.stdout.split()[0]
        out, errs = tail.communicate(timeout=170)
        assert tail.returncode == 0, errs
        event = json.loads(out.splitlines()[0])
        assert event["receipt_id"] == rid and event["source"]["filename"] == "sample_01.jpg"
        assert event["fields"]["total"]["value"], event["fields"]

        worker.send_signal(signal.SIGTERM)  # a clean stop
        assert worker.wait(60) == 0
        worker = None

        # demo: starts (here: reuses) the stack and its own worker, prints the table, stops the stack
        demo = _run(["demo", "--down", "--timeout", "240"], env, timeout=300)
        assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
        assert "receipts.extracted" in demo.stdout and "sample_0" in demo.stdout, demo.stdout
        n = len(list(SAMPLES.glob("sample_*.jpg")))
        assert f"{n} receipt(s) extracted" in demo.stderr, demo.stderr[-2000:]
        after = _run(["stack", "status"], env)
        assert _ready(after.stdout) == {"kafka": False, "minio": False}, after.stdout
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        down = _run(["stack", "down"], env)
        assert down.returncode == 0, down.stderr
