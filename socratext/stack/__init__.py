"""Starts, checks and stops the local stack: one Apache Kafka broker (KRaft) and one MinIO server.

Here: `up`, `down`, `status` and the restarts of the fault tests; the broker in `stack.kafka`, the
object store in `stack.minio`, process supervision in `stack.processes`.

Why real processes instead of mocks: the streaming service relies on behaviour that fakes get wrong —
MinIO publishing bucket notifications to Kafka, consumer-group rebalances, transactional writes, a broker
going away mid-batch. Both run as plain background processes from the binaries that
`deploy/local/install.sh` puts in `$SOCRATEXT_OPT` (default /opt/socratext); data, configs, logs and pid
files live under `settings.state_dir`, so `rm -rf .state` is a full reset.

Layout under state_dir:
    kafka/server.properties, kafka/log4j.properties, kafka/data/   kafka.log  kafka.pid
    minio/data/, minio/queue/ (notifications kept while Kafka is down) minio.log  minio.pid

MinIO publishes `s3:ObjectCreated:*` events for keys under `UPLOAD_PREFIX` ("incoming/") of the receipts
bucket to `settings.topic_uploaded`; objects written elsewhere (results, samples) never trigger processing,
so a worker writing into the bucket cannot feed itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from socratext.settings import Settings
from socratext.stack.kafka import (
    KAFKA,
    SCRAM_MECHANISMS,
    ensure_topics,
    format_kafka_storage,
    kafka_controller,
    kafka_endpoint,
    kafka_jvm,
    kafka_lib,
    kafka_properties,
    kafka_ready,
    scram_format_args,
    scram_user,
    start_kafka,
)
from socratext.stack.minio import (
    MINIO,
    NOTIFY_ARN,
    NOTIFY_TARGET,
    UPLOAD_PREFIX,
    configure_bucket,
    minio_bin,
    minio_endpoint,
    minio_env,
    minio_ready,
    start_minio,
)
from socratext.stack.processes import (
    STOP_TIMEOUT_S,
    Component,
    Endpoint,
    StackError,
    alive,
    opt_dir,
    port_open,
    stop_component,
    tail,
)
from socratext.topics import topic_partitions

__all__ = [
    "KAFKA", "MINIO", "NOTIFY_ARN", "NOTIFY_TARGET", "SCRAM_MECHANISMS", "STOP_TIMEOUT_S", "UPLOAD_PREFIX",
    "Component", "Endpoint", "StackError", "addresses", "configure_bucket", "down", "ensure_topics",
    "format_kafka_storage", "kafka_controller", "kafka_endpoint", "kafka_jvm", "kafka_lib",
    "kafka_properties", "kafka_ready", "minio_bin", "minio_endpoint", "minio_env", "minio_ready", "opt_dir",
    "port_open",
    "restart_kafka", "restart_minio", "scram_format_args", "scram_user", "start_kafka", "start_minio",
    "status", "stop_component", "up", "wait_ready",
]


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    """Serialise up/down/restart on one state dir, so two concurrent `up` calls cannot both start a broker."""
    state = Path(settings.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "stack.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def wait_ready(settings: Settings, timeout: float = 90.0, kafka: bool = True, minio: bool = True) -> None:
    """Block until the selected services answer, or raise StackError with the log tail."""
    deadline = time.monotonic() + timeout
    checks = [(KAFKA, kafka_ready)] if kafka else []
    checks += [(MINIO, minio_ready)] if minio else []
    for comp, ready in checks:
        while not ready(settings):
            # Only the raw pid here: the JVM launcher re-execs itself, briefly blanking its command line.
            pid = comp.recorded_pid(settings)
            if pid is not None and not alive(pid):
                raise StackError(
                    f"{comp.name} exited during start; last log lines:\n{tail(comp.log_file(settings))}"
                )
            if time.monotonic() > deadline:
                raise StackError(
                    f"{comp.name} not ready after {timeout:.0f} s; last log lines:\n"
                    f"{tail(comp.log_file(settings))}"
                )
            time.sleep(0.5)


def addresses(settings: Settings) -> dict[str, str]:
    return {
        "kafka_bootstrap": str(kafka_endpoint(settings)),
        "s3_endpoint": settings.s3_endpoint,
        "bucket": settings.s3_bucket,
        "upload_prefix": UPLOAD_PREFIX,
        "topics": ",".join(topic_partitions(settings)),
        "state_dir": str(settings.state_dir),
    }


def up(settings: Settings, timeout: float = 120.0) -> dict[str, str]:
    """Start what is not running, then make sure topics, bucket and notification exist. Idempotent.

    A service that already answers on its port but was not started from this state dir (another checkout,
    a CI service container) is used as it is and is not managed by `down`.
    """
    with _locked(settings):
        for comp in (KAFKA, MINIO):  # a pid file left by a crashed run must not be taken for a live process
            if comp.pid(settings) is None:
                comp.pid_file(settings).unlink(missing_ok=True)
        if KAFKA.pid(settings) is None and not port_open(kafka_endpoint(settings)):
            start_kafka(settings)
        wait_ready(settings, timeout=timeout, minio=False)
        ensure_topics(settings)
        # MinIO after Kafka: its notification target connects to the broker when it starts.
        if MINIO.pid(settings) is None and not port_open(minio_endpoint(settings)):
            start_minio(settings)
        wait_ready(settings, timeout=timeout, kafka=False)
        configure_bucket(settings)
    return addresses(settings)


def down(settings: Settings, timeout: float = STOP_TIMEOUT_S) -> dict[str, bool]:
    """Stop both services started from this state dir (MinIO first, so its last events reach Kafka)."""
    with _locked(settings):
        return {comp.name: stop_component(comp, settings, timeout) for comp in (MINIO, KAFKA)}


def status(settings: Settings) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for comp, ep, ready in (
        (KAFKA, kafka_endpoint(settings), kafka_ready),
        (MINIO, minio_endpoint(settings), minio_ready),
    ):
        pid = comp.pid(settings)
        answering = ready(settings)
        out[comp.name] = {
            "address": str(ep),
            "pid": pid,
            "managed": pid is not None,  # started from this state dir, so `down` will stop it
            "ready": answering,
            "log": str(comp.log_file(settings)),
        }
    return out


def _restart(comp: Component, start: Callable[[Settings], int], settings: Settings, downtime_s: float,
             timeout: float, while_down: Callable[[], object] | None) -> None:
    """Stop `comp`, run `while_down()`, stay down `downtime_s`, start it again (even if `while_down`
    raised) and wait until it answers. Only a component started from this state dir can be restarted."""
    with _locked(settings):
        if comp.pid(settings) is None:
            raise StackError(f"{comp.name} is not managed by this state dir; cannot restart it")
        stop_component(comp, settings)
        try:
            if while_down is not None:
                while_down()
            if downtime_s > 0:
                time.sleep(downtime_s)
        finally:
            start(settings)
            wait_ready(settings, timeout=timeout, kafka=comp is KAFKA, minio=comp is MINIO)


def restart_kafka(
    settings: Settings,
    downtime_s: float = 0.0,
    timeout: float = 90.0,
    while_down: Callable[[], object] | None = None,
) -> None:
    """Restart the broker around `while_down()` (see `_restart`).

    For fault tests: producers/consumers must survive it, and MinIO's queue dir keeps the events created
    meanwhile (`while_down` is where a test uploads).
    """
    _restart(KAFKA, start_kafka, settings, downtime_s, timeout, while_down)


def restart_minio(
    settings: Settings,
    downtime_s: float = 0.0,
    timeout: float = 90.0,
    while_down: Callable[[], object] | None = None,
) -> None:
    """Restart the object store around `while_down()` (see `_restart`); its data dir is kept, so every
    object stored before the outage is there afterwards.

    For fault tests: workers must ride out a short outage (retries) and dead-letter, not crash, on a long
    one.
    """
    _restart(MINIO, start_minio, settings, downtime_s, timeout, while_down)
