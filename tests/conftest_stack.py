"""Pytest plugin: a session-wide real local stack (Kafka + MinIO) for tests marked `stack`.

Loaded from tests/conftest.py with `pytest_plugins = ["tests.conftest_stack"]`. The stack runs from its
own state dir (default /tmp/socratext-test-stack, env SOCRATEXT_TEST_STATE_DIR) on the ports of the
default Settings (override with SOCRATEXT_KAFKA_BOOTSTRAP / SOCRATEXT_S3_ENDPOINT). If both services
already answer there (a developer's `socratext stack up`, a CI service), they are reused and left
running; otherwise the fixture starts them and stops them at the end of the session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from socratext import stack as stack_mod
from socratext.settings import Settings

DEFAULT_TEST_STATE_DIR = "/tmp/socratext-test-stack"


def _installed() -> str | None:
    """Why the stack cannot start here, or None when the binaries are installed."""
    if not any(stack_mod.kafka_lib().glob("kafka_2.13-*.jar")):
        return f"no Kafka jars in {stack_mod.kafka_lib()}"
    if not stack_mod.minio_bin().exists():
        return f"no MinIO binary at {stack_mod.minio_bin()}"
    return None


def skip_unless_required(msg: str) -> None:
    """Skip a test that needs the local stack's binaries, or fail it where the stack is required
    (`SOCRATEXT_REQUIRE_STACK=1`, as `.ci/run` sets): a CI run without the stack must not pass green."""
    if os.environ.get("SOCRATEXT_REQUIRE_STACK") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def stack() -> Iterator[Settings]:
    """Settings pointing at a running stack with topics, bucket and bucket notification in place."""
    settings = Settings(state_dir=Path(os.environ.get("SOCRATEXT_TEST_STATE_DIR", DEFAULT_TEST_STATE_DIR)))
    state = stack_mod.status(settings)
    already_running = all(s["ready"] for s in state.values())
    if not already_running:
        missing = _installed()
        if missing:
            skip_unless_required(f"local stack not installed ({missing}); run deploy/local/install.sh")
    stack_mod.up(settings)  # also just (re)ensures topics/bucket/notification when reused
    try:
        yield settings
    finally:
        if not already_running:
            stack_mod.down(settings)


@contextmanager
def private_stack(state_dir: Path, **overrides: object) -> Iterator[Settings]:
    """A stack of its own (Kafka + MinIO) on free ports under `state_dir`, stopped on exit: for tests
    that stop, restart or reconfigure the services, so they never touch the session's stack or a
    developer's, and never skip because the default ports are taken."""
    from tests.streamkit import free_port, free_port_pair

    missing = _installed()
    if missing:
        skip_unless_required(f"local stack not installed ({missing}); run deploy/local/install.sh")
    settings = Settings(state_dir=state_dir, kafka_bootstrap=f"127.0.0.1:{free_port_pair()}",
                        s3_endpoint=f"http://127.0.0.1:{free_port()}", **overrides)  # type: ignore[arg-type]
    try:
        stack_mod.up(settings, timeout=120)
        yield settings
    finally:
        stack_mod.down(settings)
