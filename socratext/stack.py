"""Starts, checks and stops the local stack: one Apache Kafka broker (KRaft) and one MinIO server.

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

import base64
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from socratext.settings import Settings
from socratext.topics import topic_partitions

if TYPE_CHECKING:  # boto3 is imported only when the bucket is configured: `stack status` stays fast
    from socratext.storage import ObjectStore

log = logging.getLogger(__name__)

UPLOAD_PREFIX = "incoming/"
NOTIFY_TARGET = "SOCRATEXT"  # MinIO target id: env suffix and ARN part
NOTIFY_ARN = f"arn:minio:sqs::{NOTIFY_TARGET}:kafka"
KAFKA_HEAP = "-Xmx512m"
STOP_TIMEOUT_S = 20.0


class StackError(RuntimeError):
    """The stack could not be installed, started or reached; the message says what to look at."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


# ------------------------------------------------------------------------------------------ paths/config


def opt_dir() -> Path:
    """Install root shared with deploy/local/install.sh (env SOCRATEXT_OPT)."""
    return Path(os.environ.get("SOCRATEXT_OPT", "/opt/socratext"))


def kafka_lib() -> Path:
    return opt_dir() / "kafka" / "lib"


def minio_bin() -> Path:
    found = opt_dir() / "bin" / "minio"
    if found.exists():
        return found
    on_path = shutil.which("minio")
    return Path(on_path) if on_path else found


def _ipv4(host: str) -> str:
    # "localhost" can resolve to ::1 first on some hosts; the processes listen on IPv4 only.
    return "127.0.0.1" if host in ("localhost", "") else host


def kafka_endpoint(settings: Settings) -> Endpoint:
    first = settings.kafka_bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return Endpoint(_ipv4(host), int(port))


def kafka_controller(settings: Settings) -> Endpoint:
    """The KRaft controller listens next to the broker (19092 -> 19093)."""
    ep = kafka_endpoint(settings)
    return Endpoint(ep.host, ep.port + 1)


def minio_endpoint(settings: Settings) -> Endpoint:
    url = urlparse(settings.s3_endpoint)
    return Endpoint(_ipv4(url.hostname or ""), url.port or (443 if url.scheme == "https" else 80))


SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")


def scram_user(settings: Settings) -> tuple[str, str] | None:
    """(username, password) when the local broker must require SASL/SCRAM, None for PLAINTEXT.

    `kafka_security_protocol=SASL_PLAINTEXT` with a SCRAM mechanism makes `stack up` serve the broker
    port with SASL/SCRAM (the user is created when the log dir is formatted, so on a fresh state dir):
    the same authentication as production, without certificates. TLS needs certificates the local stack
    does not make: use a real cluster for SSL / SASL_SSL."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol != "SASL_PLAINTEXT" or settings.kafka_sasl_mechanism not in SCRAM_MECHANISMS:
        raise StackError("the local stack serves PLAINTEXT, or SASL_PLAINTEXT with SCRAM-SHA-256/512; "
                         f"not {protocol} / {settings.kafka_sasl_mechanism}")
    user, password = settings.kafka_sasl_username, settings.kafka_sasl_password.get_secret_value()
    if not user or not password or any(c in user + password for c in '"\\,=[]\n\r '):
        raise StackError("SASL_PLAINTEXT needs kafka_sasl_username and kafka_sasl_password "
                         "(without quotes, backslashes, commas, '=', brackets or spaces)")
    return user, password


def kafka_properties(settings: Settings, data_dir: Path) -> str:
    broker, controller = kafka_endpoint(settings), kafka_controller(settings)
    scram = scram_user(settings)
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{controller}",
        "listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{broker}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        # The project creates its topics with chosen partition counts; a typo must fail, not create one.
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        "log.retention.hours": "168",
        "log.segment.bytes": str(64 * 1024 * 1024),
    }
    if scram is not None:  # the client listener requires SASL/SCRAM; the controller stays internal
        lines.update({
            "listeners": f"SASL_PLAINTEXT://{broker},CONTROLLER://{controller}",
            "advertised.listeners": f"SASL_PLAINTEXT://{broker}",
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
            "sasl.enabled.mechanisms": ",".join(SCRAM_MECHANISMS),
            "sasl.mechanism.inter.broker.protocol": settings.kafka_sasl_mechanism,
        })
        for mech in SCRAM_MECHANISMS:
            lines[f"listener.name.sasl_plaintext.{mech.lower()}.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{scram[0]}" password="{scram[1]}";')
    return "".join(f"{k}={v}\n" for k, v in lines.items())


LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.controller=INFO
log4j.logger.org.apache.kafka.controller=INFO
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.org.apache.kafka.storage=WARN
"""


def _new_cluster_id() -> str:
    # Same format as `kafka-storage random-uuid` (base64url of 16 random bytes), without starting a JVM.
    # Like Kafka's own Uuid.randomUuid, never one that starts with "-": the storage tool's argument parser
    # would read it as an option ("--cluster-id: expected one argument"), failing one format in 32.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


# ------------------------------------------------------------------------------------------ processes


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


KAFKA = Component("kafka", "kafka.Kafka")
MINIO = Component("minio", "minio server")


def port_open(ep: Endpoint, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((ep.host, ep.port), timeout=timeout):
            return True
    except OSError:
        return False


_CHILDREN: dict[str, subprocess.Popen] = {}  # keeps Popen objects alive: no "still running" warnings


def _spawn(comp: Component, settings: Settings, argv: list[str], env: dict[str, str] | None = None) -> int:
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


def _alive(pid: int) -> bool:
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
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        log.warning("%s (pid %d) ignored SIGTERM for %.0f s, killing", comp.name, pid, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.1)
    comp_pid_file.unlink(missing_ok=True)
    return True


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


# ------------------------------------------------------------------------------------------ Kafka


def _java() -> str:
    java = shutil.which("java")
    if not java:
        raise StackError("java not found; run deploy/local/install.sh")
    return java


def start_kafka(settings: Settings) -> int:
    lib = kafka_lib()
    if not any(lib.glob("kafka_2.13-*.jar")):
        raise StackError(f"no Kafka jars in {lib}; run deploy/local/install.sh")
    home = Path(settings.state_dir) / "kafka"
    data = home / "data"
    data.mkdir(parents=True, exist_ok=True)
    props = home / "server.properties"
    props.touch(mode=0o600)  # it holds the SCRAM password when the broker requires SASL
    props.write_text(kafka_properties(settings, data))
    jvm = kafka_jvm(home)
    if not (data / "meta.properties").exists():
        # KRaft needs a formatted log dir; formatting twice would fail, so only the first start does it.
        cluster_id = format_kafka_storage(jvm, props, _scram_format_args(settings))
        (home / "cluster.id").write_text(cluster_id + "\n")
    return _spawn(KAFKA, settings, [*jvm, "kafka.Kafka", str(props)])


def kafka_jvm(home: Path) -> list[str]:
    """The JVM command line of the broker's classes (the jars of deploy/local/install.sh), logging under
    `home` (its log4j.properties is written there)."""
    log4j = home / "log4j.properties"
    log4j.write_text(LOG4J_PROPERTIES)
    return [_java(), KAFKA_HEAP, "-Xms64m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{log4j}", f"-Dkafka.logs.dir={home}", "-cp", f"{kafka_lib()}/*"]


def format_kafka_storage(jvm: list[str], props: Path, extra: list[str]) -> str:
    """`kafka-storage format` the log dir of `props` with a new cluster id (returned); `extra`: more
    arguments, e.g. `--add-scram`."""
    cluster_id = _new_cluster_id()
    fmt = subprocess.run([*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props),
                          "--ignore-formatted", *extra], capture_output=True, text=True, timeout=120)
    if fmt.returncode != 0:
        raise StackError(f"kafka storage format failed:\n{fmt.stdout}\n{fmt.stderr}")
    return cluster_id


def _scram_format_args(settings: Settings) -> list[str]:
    """`kafka-storage format --add-scram` for the configured user: KRaft stores SCRAM credentials in its
    metadata log, so the user exists from the broker's first start."""
    scram = scram_user(settings)
    if scram is None:
        return []
    return [arg for mech in SCRAM_MECHANISMS
            for arg in ("--add-scram", f"{mech}=[name={scram[0]},password={scram[1]}]")]


def _kafka_admin(settings: Settings, timeout_s: float = 5.0):
    from kafka.admin import KafkaAdminClient  # imported lazily: the CLI works without the stream extra

    from socratext.kafka_config import kafka_python_kwargs

    return KafkaAdminClient(**kafka_python_kwargs(
        settings,
        bootstrap_servers=str(kafka_endpoint(settings)),
        client_id="socratext-stack",
        request_timeout_ms=int(timeout_s * 1000),
    ))


def kafka_ready(settings: Settings) -> bool:
    """True when the broker answers a metadata request (not merely an open port)."""
    if not port_open(kafka_endpoint(settings)):
        return False
    try:
        admin = _kafka_admin(settings, timeout_s=3.0)
    except Exception:  # NoBrokersAvailable, KafkaTimeoutError, connection resets during start
        return False
    try:
        admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        admin.close()


def ensure_topics(settings: Settings, attempts: int = 20) -> list[str]:
    """Create missing topics (existing ones are left as they are); returns the names created."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = topic_partitions(settings)
    last: Exception | None = None
    for _ in range(attempts):
        try:
            admin = _kafka_admin(settings)
        except Exception as exc:
            last = exc
            time.sleep(0.5)
            continue
        try:
            existing = set(admin.list_topics())
            missing = [NewTopic(name, n, 1) for name, n in wanted.items() if name not in existing]
            if missing:
                try:
                    admin.create_topics(missing, timeout_ms=10_000)
                except TopicAlreadyExistsError:
                    pass  # a concurrent `up` got there first
            # Verify: right after a controller start, a creation can be accepted but not yet visible.
            if set(wanted) <= set(admin.list_topics()):
                return [t.name for t in missing]
        except Exception as exc:  # NotController, timeouts while the broker settles
            last = exc
        finally:
            admin.close()
        time.sleep(0.5)
    raise StackError(f"could not create topics {sorted(wanted)}: {last!r}")


# ------------------------------------------------------------------------------------------ MinIO


def minio_env(settings: Settings) -> dict[str, str]:
    """Root credentials and the Kafka notification target, given to MinIO through its environment."""
    queue = Path(settings.state_dir) / "minio" / "queue"
    t = NOTIFY_TARGET
    return {
        "MINIO_ROOT_USER": settings.s3_access_key,
        "MINIO_ROOT_PASSWORD": settings.s3_secret_key.get_secret_value(),
        "MINIO_BROWSER": "off",  # no web console: less memory and one port fewer
        "MINIO_UPDATE": "off",
        "MINIO_CI_CD": "1",
        "GOMAXPROCS": "2",
        f"MINIO_NOTIFY_KAFKA_ENABLE_{t}": "on",
        f"MINIO_NOTIFY_KAFKA_BROKERS_{t}": str(kafka_endpoint(settings)),
        f"MINIO_NOTIFY_KAFKA_TOPIC_{t}": settings.topic_uploaded,
        # Events are written here first and replayed when Kafka is back, so a broker restart loses none.
        f"MINIO_NOTIFY_KAFKA_QUEUE_DIR_{t}": str(queue),
        f"MINIO_NOTIFY_KAFKA_QUEUE_LIMIT_{t}": "100000",
        **_minio_sasl_env(settings),
    }


def _minio_sasl_env(settings: Settings) -> dict[str, str]:
    """MinIO's notification target authenticates like every other client when the broker wants SCRAM."""
    scram = scram_user(settings)
    if scram is None:
        return {}
    t = NOTIFY_TARGET
    return {f"MINIO_NOTIFY_KAFKA_SASL_{t}": "on", f"MINIO_NOTIFY_KAFKA_SASL_USERNAME_{t}": scram[0],
            f"MINIO_NOTIFY_KAFKA_SASL_PASSWORD_{t}": scram[1],
            f"MINIO_NOTIFY_KAFKA_SASL_MECHANISM_{t}": settings.kafka_sasl_mechanism.lower().replace(
                "scram-sha-", "sha")}


def start_minio(settings: Settings) -> int:
    binary = minio_bin()
    if not binary.exists():
        raise StackError(f"MinIO binary not found at {binary}; run deploy/local/install.sh")
    home = Path(settings.state_dir) / "minio"
    (home / "data").mkdir(parents=True, exist_ok=True)
    (home / "queue").mkdir(parents=True, exist_ok=True)
    ep = minio_endpoint(settings)
    argv = [str(binary), "server", str(home / "data"), "--address", str(ep), "--quiet", "--anonymous"]
    return _spawn(MINIO, settings, argv, env=minio_env(settings))


def minio_ready(settings: Settings) -> bool:
    url = settings.s3_endpoint.rstrip("/") + "/minio/health/live"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def configure_bucket(settings: Settings) -> bool:
    """Create the receipts bucket and (re)apply its Kafka notification; returns True if the bucket is new."""
    from botocore.exceptions import BotoCoreError, ClientError

    from socratext.errors import SocratextError
    from socratext.storage import ObjectStore

    store = ObjectStore(settings)
    try:
        created = store.ensure_bucket(settings.s3_bucket)
    except SocratextError as exc:
        raise StackError(f"cannot create bucket {settings.s3_bucket!r}: {exc}") from exc
    try:
        _put_notification(store, settings.s3_bucket)
    except (ClientError, BotoCoreError) as exc:
        raise StackError(
            f"MinIO rejected the bucket notification ({exc}); a MinIO not started by `socratext stack up` "
            f"needs the MINIO_NOTIFY_KAFKA_*_{NOTIFY_TARGET} variables of stack.minio_env()"
        ) from exc
    return created


def _put_notification(store: ObjectStore, bucket: str) -> None:
    store.client.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": "socratext-uploaded",
                    "QueueArn": NOTIFY_ARN,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": UPLOAD_PREFIX}]}},
                }
            ]
        },
    )


# ------------------------------------------------------------------------------------------ public API


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
            if pid is not None and not _alive(pid):
                raise StackError(
                    f"{comp.name} exited during start; last log lines:\n{_tail(comp.log_file(settings))}"
                )
            if time.monotonic() > deadline:
                raise StackError(
                    f"{comp.name} not ready after {timeout:.0f} s; last log lines:\n"
                    f"{_tail(comp.log_file(settings))}"
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
