"""The local Kafka broker: its configuration (KRaft, one node, optional SASL/SCRAM), storage format,
start, readiness and the project's topics (created with the partitions `socratext.topics` declares)."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from socratext.settings import Settings
from socratext.stack.processes import Component, Endpoint, StackError, ipv4, opt_dir, port_open, spawn
from socratext.topics import topic_partitions

KAFKA_HEAP = "-Xmx512m"
KAFKA = Component("kafka", "kafka.Kafka")


def kafka_lib() -> Path:
    return opt_dir() / "kafka" / "lib"


def kafka_endpoint(settings: Settings) -> Endpoint:
    first = settings.kafka_bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return Endpoint(ipv4(host), int(port))


def kafka_controller(settings: Settings) -> Endpoint:
    """The KRaft controller listens next to the broker (19092 -> 19093)."""
    ep = kafka_endpoint(settings)
    return Endpoint(ep.host, ep.port + 1)


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


def java() -> str:
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
        cluster_id = format_kafka_storage(jvm, props, scram_format_args(settings))
        (home / "cluster.id").write_text(cluster_id + "\n")
    return spawn(KAFKA, settings, [*jvm, "kafka.Kafka", str(props)])


def kafka_jvm(home: Path) -> list[str]:
    """The JVM command line of the broker's classes (the jars of deploy/local/install.sh), logging under
    `home` (its log4j.properties is written there)."""
    log4j = home / "log4j.properties"
    log4j.write_text(LOG4J_PROPERTIES)
    return [java(), KAFKA_HEAP, "-Xms64m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{log4j}", f"-Dkafka.logs.dir={home}", "-cp", f"{kafka_lib()}/*"]


def format_kafka_storage(jvm: list[str], props: Path, extra: list[str], cluster_id: str | None = None) -> str:
    """`kafka-storage format` the log dir of `props` with `cluster_id` (by default a new one), returned;
    `extra`: more arguments, e.g. `--add-scram`."""
    cluster_id = cluster_id or _new_cluster_id()
    fmt = subprocess.run([*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props),
                          "--ignore-formatted", *extra], capture_output=True, text=True, timeout=120)
    if fmt.returncode != 0:
        raise StackError(f"kafka storage format failed:\n{fmt.stdout}\n{fmt.stderr}")
    return cluster_id


def scram_format_args(settings: Settings) -> list[str]:
    """`kafka-storage format --add-scram` for the configured user: KRaft stores SCRAM credentials in its
    metadata log, so the user exists from the broker's first start."""
    scram = scram_user(settings)
    if scram is None:
        return []
    return [arg for mech in SCRAM_MECHANISMS
            for arg in ("--add-scram", f"{mech}=[name={scram[0]},password={scram[1]}]")]


def kafka_admin(settings: Settings, timeout_s: float = 5.0):
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
        admin = kafka_admin(settings, timeout_s=3.0)
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
            admin = kafka_admin(settings)
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
