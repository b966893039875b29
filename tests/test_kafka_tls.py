"""Kafka over TLS against a real broker: SSL and SASL_SSL (SCRAM) with a CA made here.

The local stack serves PLAINTEXT or SASL_PLAINTEXT only (`socratext/stack/kafka.py`: TLS needs certificates a
developer's stack does not make), so this test starts a KRaft broker of its own, from the same jars, with
one SSL and one SASL_SSL listener whose certificate is signed by a throw-away CA. Through those listeners,
configured by `Settings` alone (`socratext/kafka_config.py`): the kafka-python admin, producer and
`read_committed` consumer, and the aiokafka transactional producer of exactly-once delivery
(`streams/delivery.py`) commit and read a transaction. A client that does not trust the CA, a wrong
SCRAM password and a plaintext client are refused.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from socratext import stack as stack_mod
from socratext.settings import Settings
from tests.conftest_stack import _installed, skip_unless_required
from tests.streamkit import free_port

pytestmark = [pytest.mark.stack, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:.*(read_text|open_text) is deprecated:DeprecationWarning")]

USER, PASSWORD = "socratext", f"tls-{uuid.uuid4().hex[:12]}"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> dict[str, Path]:
    """A CA, a broker certificate for 127.0.0.1/localhost signed by it, and a CA nobody trusts."""
    paths = {n: d / f"{n}.pem" for n in ("ca", "ca_key", "key", "csr", "cert", "keystore", "other_ca",
                                         "other_key")}
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", str(paths["ca_key"]), "-out", str(paths["ca"]), "-days", "1",
             "-subj", "/CN=socratext test CA")
    _openssl("req", "-x509", *ec, "-keyout", str(paths["other_key"]), "-out", str(paths["other_ca"]),
             "-days", "1", "-subj", "/CN=some other CA")
    _openssl("req", *ec, "-keyout", str(paths["key"]), "-out", str(paths["csr"]), "-subj", "/CN=127.0.0.1")
    ext = d / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", str(paths["csr"]), "-CA", str(paths["ca"]),
             "-CAkey", str(paths["ca_key"]), "-CAcreateserial", "-out", str(paths["cert"]), "-days", "1",
             "-extfile", str(ext))
    # Kafka's PEM key store: the (unencrypted PKCS#8) key and the certificate chain in one file
    chain = paths["cert"].read_text() + paths["ca"].read_text()
    paths["keystore"].write_text(paths["key"].read_text() + chain)
    return paths


def broker_properties(data: Path, ssl_port: int, sasl_port: int, controller: int,
                      pki: dict[str, Path]) -> str:
    jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{USER}" '
            f'password="{PASSWORD}";')
    props = {
        "process.roles": "broker,controller", "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller}",
        "listeners": f"SSL://127.0.0.1:{ssl_port},SASL_SSL://127.0.0.1:{sasl_port},"
                     f"CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": f"SSL://127.0.0.1:{ssl_port},SASL_SSL://127.0.0.1:{sasl_port}",
        "controller.listener.names": "CONTROLLER", "inter.broker.listener.name": "SSL",
        "listener.security.protocol.map": "SSL:SSL,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "ssl.keystore.type": "PEM", "ssl.keystore.location": str(pki["keystore"]),
        "ssl.truststore.type": "PEM", "ssl.truststore.location": str(pki["ca"]),
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": jaas,
        "log.dirs": str(data), "num.partitions": "1", "default.replication.factor": "1",
        "offsets.topic.replication.factor": "1", "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1", "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1", "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    missing = _installed()
    if missing:
        skip_unless_required(f"local stack not installed ({missing})")
    if shutil.which("openssl") is None:
        skip_unless_required("openssl not installed")
    d = tmp_path_factory.mktemp("kafka-tls")
    pki = make_pki(d)
    ssl_port, sasl_port, controller = free_port(), free_port(), free_port()
    props = d / "server.properties"
    props.write_text(broker_properties(d / "data", ssl_port, sasl_port, controller, pki))
    jvm = stack_mod.kafka_jvm(d)
    scram = f"SCRAM-SHA-512=[name={USER},password={PASSWORD}]"
    stack_mod.format_kafka_storage(jvm, props, ["--add-scram", scram])
    log = (d / "kafka.log").open("w")
    proc = subprocess.Popen([*jvm, "kafka.Kafka", str(props)], stdout=log, stderr=subprocess.STDOUT)
    try:
        ssl_settings = Settings(kafka_bootstrap=f"127.0.0.1:{ssl_port}", kafka_security_protocol="SSL",
                                kafka_ssl_cafile=str(pki["ca"]))
        deadline = time.monotonic() + 90
        while not stack_mod.kafka_ready(ssl_settings):
            assert proc.poll() is None, (d / "kafka.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the TLS broker did not answer in 90 s:\n" + \
                (d / "kafka.log").read_text()[-3000:]
            time.sleep(1)
        yield {"ssl": ssl_settings, "pki": pki, "sasl_port": sasl_port, "ssl_port": ssl_port}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _sasl_ssl(broker: dict[str, object], password: str = PASSWORD) -> Settings:
    pki = broker["pki"]
    assert isinstance(pki, dict)
    return Settings(kafka_bootstrap=f"127.0.0.1:{broker['sasl_port']}", kafka_security_protocol="SASL_SSL",
                    kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username=USER,
                    kafka_sasl_password=SecretStr(password), kafka_ssl_cafile=str(pki["ca"]))


def _round_trip(settings: Settings, topic: str) -> None:
    """Create `topic`, commit a transaction on it with the aiokafka transactional producer (as the
    workers do), add a plain record with kafka-python, and read both back `read_committed`."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    from socratext.kafka_config import kafka_python_kwargs
    from streams.delivery import make_aiokafka_producer

    admin = KafkaAdminClient(**kafka_python_kwargs(settings))
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        admin.close()

    async def transaction() -> None:
        producer = make_aiokafka_producer(settings, f"tls-test-{topic}", 1_000_000)
        await producer.start()
        try:
            async with producer.transaction():
                await producer.send(topic, key=b"r1", value=b'{"receipt_id": "r1"}')
        finally:
            await producer.stop()

    asyncio.run(transaction())
    producer = KafkaProducer(**kafka_python_kwargs(settings, acks="all"))
    producer.send(topic, key=b"r2", value=b'{"receipt_id": "r2"}').get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(**kafka_python_kwargs(settings, group_id=None, isolation_level="read_committed",
                                                   enable_auto_commit=False))
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        keys: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(keys) < 2 and time.monotonic() < deadline:
            for msgs in consumer.poll(timeout_ms=500).values():
                keys += [m.key for m in msgs]
        assert keys == [b"r1", b"r2"]
    finally:
        consumer.close()


def test_ssl_clients_from_settings_only(tls_broker: dict[str, object]) -> None:
    ssl_settings = tls_broker["ssl"]
    assert isinstance(ssl_settings, Settings)
    _round_trip(ssl_settings, "tls.ssl")


def test_sasl_ssl_clients_from_settings_only(tls_broker: dict[str, object]) -> None:
    _round_trip(_sasl_ssl(tls_broker), "tls.sasl-ssl")


def test_untrusted_ca_wrong_password_and_plaintext_are_refused(tls_broker: dict[str, object]) -> None:
    pki = tls_broker["pki"]
    assert isinstance(pki, dict)
    untrusted = Settings(kafka_bootstrap=f"127.0.0.1:{tls_broker['ssl_port']}", kafka_security_protocol="SSL",
                         kafka_ssl_cafile=str(pki["other_ca"]))
    plaintext = Settings(kafka_bootstrap=f"127.0.0.1:{tls_broker['ssl_port']}")
    for settings in (untrusted, _sasl_ssl(tls_broker, password="wrong-" + PASSWORD), plaintext):
        assert not stack_mod.kafka_ready(settings), settings.kafka_security_protocol
