"""The local stack's processes: start one detached, know whether a pid is still ours, stop it.

Kept apart from what Kafka and MinIO need to start, so the supervision rules (own session, pid files
checked against the command line, SIGTERM then SIGKILL to the group) are written once for both.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from socratext.settings import Settings

log = logging.getLogger("socratext.stack")

STOP_TIMEOUT_S = 20.0


class StackError(RuntimeError):
    """The stack could not be installed, started or reached; the message says what to look at."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def opt_dir() -> Path:
    """Install root shared with deploy/local/install.sh (env SOCRATEXT_OPT)."""
    return Path(os.environ.get("SOCRATEXT_OPT", "/opt/socratext"))


def ipv4(host: str) -> str:
    # "localhost" can resolve to ::1 first on some hosts; the processes listen on IPv4 only.
    return "127.0.0.1" if host in ("localhost", "") else host


@dataclass(frozen=True)
class Component:
    name: str
    marker: str  # must appear in /proc/<pid>/cmdline, so a recycled pid is not mistaken for ours

    def pid_file(self, settings: Settings) -> Path:
        return Path(settings.state_dir) / f"{self.name}.pid"

    def log_file(self, settings: Settings) -> Path:
        return Path(settings.state_dir) / f"{self.name}.log"

    def recorded_pid(self, settings: Settings) -> int | None:
        try:
            return int(self.pid_file(settings).read_text().strip())
        except (OSError, ValueError):
            return None

    def pid(self, settings: Settings) -> int | None:
        """The recorded pid if that process is still ours (checked against its command line)."""
        pid = self.recorded_pid(settings)
        if pid is None:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return None
        return pid if self.marker in cmdline else None


def port_open(ep: Endpoint, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((ep.host, ep.port), timeout=timeout):
            return True
    except OSError:
        return False


_CHILDREN: dict[str, subprocess.Popen] = {}  # keeps Popen objects alive: no "still running" warnings


def spawn(comp: Component, settings: Settings, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start a detached process (own session, so Ctrl-C in the CLI does not kill the stack)."""
    state = Path(settings.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    with open(comp.log_file(settings), "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=state,
        )
    _CHILDREN[comp.name] = proc
    comp.pid_file(settings).write_text(f"{proc.pid}\n")
    log.info("started %s (pid %d), log %s", comp.name, proc.pid, comp.log_file(settings))
    return proc.pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process counts as dead; reap it.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def stop_component(comp: Component, settings: Settings, timeout: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM the process group, SIGKILL it after `timeout`; returns True if something was stopped."""
    pid = comp.pid(settings)
    comp_pid_file = comp.pid_file(settings)
    if pid is None:
        comp_pid_file.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        log.warning("%s (pid %d) ignored SIGTERM for %.0f s, killing", comp.name, pid, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.1)
    comp_pid_file.unlink(missing_ok=True)
    return True


def tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"
