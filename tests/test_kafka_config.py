"""Kafka TLS / SASL settings → kafka-python, aiokafka and Faust arguments (socratext.kafka_config), and
secrets that never show in a repr, a log line or an event."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from socratext import kafka_config as kc
from socratext.settings import Settings

pytestmark = pytest.mark.filterwarnings("ignore:.*(read_text|open_text) is deprecated:DeprecationWarning")

PASSWORD = "scram-pw-7d41c0ffee"
KEY_PASSWORD = "tls-key-pw-99aa"


def sasl(**over: object) -> Settings:
    base: dict[str, object] = {"kafka_bootstrap": "k1:9093, k2:9093",
                               "kafka_security_protocol": "SASL_PLAINTEXT",
                               "kafka_sasl_mechanism": "SCRAM-SHA-256", "kafka_sasl_username": "socratext",
                               "kafka_sasl_password": PASSWORD}
    base.update(over)
    return Settings(**base)


@pytest.fixture(scope="module")
def client_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its password-protected EC key (it is its own CA)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=socratext-test",
                    "-passout", f"pass:{KEY_PASSWORD}"], check=True, capture_output=True, timeout=60)
    return cert, key


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    s = Settings(kafka_bootstrap="localhost:19092")
    assert kc.security_kwargs(s) == {"security_protocol": "PLAINTEXT"}
    assert kc.kafka_python_kwargs(s, acks="all") == {"bootstrap_servers": ["localhost:19092"],
                                                     "security_protocol": "PLAINTEXT", "acks": "all"}
    assert kc.faust_credentials(s) is None
    assert kc.faust_broker(Settings(kafka_bootstrap="a:1,b:2")) == "kafka://a:1;b:2"


def test_sasl_scram_over_plaintext() -> None:
    s = sasl()
    kw = kc.kafka_python_kwargs(s)
    assert kw == {"bootstrap_servers": ["k1:9093", "k2:9093"], "security_protocol": "SASL_PLAINTEXT",
                  "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": "socratext",
                  "sasl_plain_password": PASSWORD}
    assert kc.aiokafka_kwargs(s) == kw
    creds = kc.faust_credentials(s)
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    assert credentials_to_aiokafka_auth(creds) == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "socratext", "sasl_plain_password": PASSWORD, "ssl_context": None}


def test_sasl_ssl_with_a_ca_and_a_client_certificate(client_cert: tuple[Path, Path]) -> None:
    cert, key = client_cert
    s = sasl(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
             kafka_ssl_cafile=str(cert), kafka_ssl_certfile=str(cert), kafka_ssl_keyfile=str(key),
             kafka_ssl_key_password=KEY_PASSWORD)
    kw = kc.kafka_python_kwargs(s)
    ctx = kw["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert kw["security_protocol"] == "SASL_SSL" and kw["ssl_check_hostname"] is True
    assert kw["sasl_mechanism"] == "SCRAM-SHA-512"
    creds = kc.faust_credentials(s)
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-512"
    assert creds.ssl_context is not None
    with pytest.raises(ssl.SSLError):  # the key password is really used
        kc.ssl_context(sasl(kafka_security_protocol="SASL_SSL", kafka_ssl_certfile=str(cert),
                            kafka_ssl_keyfile=str(key), kafka_ssl_key_password="wrong"))


def test_tls_only() -> None:
    s = Settings(kafka_security_protocol="SSL", kafka_ssl_check_hostname=False)
    kw = kc.kafka_python_kwargs(s)
    assert set(kw) == {"bootstrap_servers", "security_protocol", "ssl_context", "ssl_check_hostname"}
    assert not kw["ssl_context"].check_hostname and kw["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    creds = kc.faust_credentials(s)
    assert creds.protocol.value == "SSL" and creds.context is not None


def test_the_real_clients_accept_the_arguments() -> None:
    """Built against an unreachable broker: construction validates the arguments without connecting."""
    from kafka import KafkaConsumer, KafkaProducer

    s = sasl(kafka_bootstrap="127.0.0.1:1")
    KafkaProducer(**kc.kafka_python_kwargs(s, api_version=(2, 5))).close(timeout=1)
    KafkaConsumer(**kc.kafka_python_kwargs(s, api_version=(2, 5))).close()

    async def build() -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        AIOKafkaProducer(**kc.aiokafka_kwargs(s))
        AIOKafkaConsumer(**kc.aiokafka_kwargs(sasl(kafka_security_protocol="SASL_SSL")))

    asyncio.run(build())


def test_the_faust_app_gets_the_credentials() -> None:
    from streams.app import create_app

    app = create_app(sasl(), stage="ocr")
    try:
        creds = app.conf.broker_credentials
        assert creds.username == "socratext" and creds.mechanism.value == "SCRAM-SHA-256"
        assert [str(u) for u in app.conf.broker] == ["kafka://k1:9093", "kafka://k2:9093"]
    finally:
        app.socratext_runtime.executor.shutdown(wait=False)


def test_sasl_without_credentials_is_refused_without_naming_secrets() -> None:
    for s in (sasl(kafka_sasl_password=""), sasl(kafka_sasl_username="")):
        with pytest.raises(kc.KafkaConfigError, match="kafka_sasl_username and kafka_sasl_password"):
            kc.kafka_python_kwargs(s)
        with pytest.raises(kc.KafkaConfigError):
            kc.faust_credentials(s)


def test_protocol_and_mechanism_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCRATEXT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SOCRATEXT_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("SOCRATEXT_KAFKA_SASL_PASSWORD", PASSWORD)
    s = Settings()
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert s.kafka_sasl_password.get_secret_value() == PASSWORD
    monkeypatch.setenv("SOCRATEXT_KAFKA_SECURITY_PROTOCOL", "TLS")
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.setenv("SOCRATEXT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SOCRATEXT_KAFKA_SASL_MECHANISM", "MD5")
    with pytest.raises(ValidationError):
        Settings()


def test_secrets_never_show(client_cert: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    cert, key = client_cert
    s = sasl(kafka_security_protocol="SASL_SSL", kafka_ssl_certfile=str(cert), kafka_ssl_keyfile=str(key),
             kafka_ssl_key_password=KEY_PASSWORD, s3_secret_key="s3-secret-5f5f5f")
    secrets = (PASSWORD, KEY_PASSWORD, "s3-secret-5f5f5f")
    described = kc.describe(s)
    assert described["sasl_password_set"] is True and described["sasl_username"] == "socratext"
    shown = [repr(s), str(s), s.model_dump_json(), json.dumps(described), repr(kc.faust_credentials(s))]
    with caplog.at_level(logging.INFO):
        logging.getLogger("streams").info("worker all: kafka %s", described)
    shown.append(caplog.text)
    for text in shown:
        for secret in secrets:
            assert secret not in text, text[:200]


def test_local_stack_scram_configuration(tmp_path: Path) -> None:
    from socratext import stack

    plain = Settings(kafka_bootstrap="127.0.0.1:29092")
    assert stack.scram_user(plain) is None and stack.scram_format_args(plain) == []
    assert "SASL" not in stack.kafka_properties(plain, tmp_path) and "SASL" not in str(stack.minio_env(plain))
    s = sasl(kafka_bootstrap="127.0.0.1:29092", kafka_sasl_mechanism="SCRAM-SHA-512")
    props = dict(line.split("=", 1) for line in stack.kafka_properties(s, tmp_path).splitlines())
    assert props["listeners"] == "SASL_PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert f'password="{PASSWORD}"' in props["listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"]
    assert stack.scram_format_args(s)[:2] == ["--add-scram",
                                               f"SCRAM-SHA-256=[name=socratext,password={PASSWORD}]"]
    env = stack.minio_env(s)
    assert env["MINIO_NOTIFY_KAFKA_SASL_MECHANISM_SOCRATEXT"] == "sha512"
    assert env["MINIO_NOTIFY_KAFKA_SASL_PASSWORD_SOCRATEXT"] == PASSWORD
    for bad in (sasl(kafka_security_protocol="SASL_SSL"), sasl(kafka_sasl_mechanism="PLAIN"),
                sasl(kafka_sasl_password='pw"; evil'), Settings(kafka_security_protocol="SSL")):
        with pytest.raises(stack.StackError):
            stack.kafka_properties(bad, tmp_path)


# ------------------------------------------------------------------------------ a real SCRAM broker


@pytest.mark.stack
@pytest.mark.slow
def test_a_scram_broker_serves_every_client(tmp_path: Path) -> None:
    """Its own stack (Kafka with a SASL_PLAINTEXT SCRAM-SHA-512 listener + MinIO) on free ports: the
    kafka-python admin/producer/consumer, MinIO's notification target and the Faust worker (aiokafka)
    all authenticate from the settings; a wrong password and a plaintext client are refused; the
    password is in no log line and no event."""
    import hashlib

    from kafka import KafkaConsumer
    from kafka.errors import KafkaError
    from pydantic import SecretStr

    from socratext import stack
    from socratext.cli_stream import consume, started, stop_worker, upload_files
    from socratext.storage import ObjectStore
    from streams.events import s3_receipt_id
    from streams.topics import DEADLETTER, EXTRACTED
    from tests.conftest_stack import _installed, skip_unless_required
    from tests.streamkit import Worker, collect, free_port, free_port_pair, receipt_images

    missing = _installed()
    if missing:
        skip_unless_required(f"local stack not installed ({missing})")
    pw = f"{PASSWORD}-{tmp_path.name}"
    settings = Settings(state_dir=tmp_path / "state", kafka_bootstrap=f"127.0.0.1:{free_port_pair()}",
                        s3_endpoint=f"http://127.0.0.1:{free_port()}",
                        kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-512",
                        kafka_sasl_username="socratext", kafka_sasl_password=pw)
    worker = Worker(settings, tmp_path / "worker.log")
    worker.env.update({"SOCRATEXT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                       "SOCRATEXT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                       "SOCRATEXT_KAFKA_SASL_USERNAME": "socratext", "SOCRATEXT_KAFKA_SASL_PASSWORD": pw})
    try:
        stack.up(settings, timeout=120)  # admin client over SCRAM: topics; MinIO's target over SCRAM
        for refused in [{"kafka_sasl_password": SecretStr("wrong")},
                        {"kafka_security_protocol": "PLAINTEXT"}]:
            with pytest.raises(KafkaError):  # cannot even bootstrap (kafka-python times the retries out)
                KafkaConsumer(**kc.kafka_python_kwargs(settings.model_copy(update=refused),
                                                       bootstrap_timeout_ms=4000))
        probe = KafkaConsumer(**kc.kafka_python_kwargs(settings, bootstrap_timeout_ms=4000))
        assert settings.topic_uploaded in probe.topics()
        probe.close()
        worker.start()
        (n1, d1, _), (n2, d2, _) = receipt_images(2, base=7500)
        key = f"{stack.UPLOAD_PREFIX}scram-{n1}"
        ids = {s3_receipt_id(settings.s3_bucket, key, hashlib.md5(d1).hexdigest())}
        it = started(consume(settings, [settings.topic_extracted, settings.topic_deadletter], timeout=150))
        ObjectStore(settings).put_bytes(settings.s3_bucket, key, d1, "image/jpeg")  # MinIO announces it
        ids |= {r["receipt_id"] for r in upload_files(settings, [(n2, d2)])}  # kafka-python producer
        try:
            events = collect(it, settings, ids, topics={EXTRACTED, DEADLETTER}, wait_s=150)
        finally:
            it.close()
        assert sorted(t for t, _ in events) == [EXTRACTED, EXTRACTED], events
        logs = [worker.log, settings.state_dir / "kafka.log", settings.state_dir / "minio.log"]
        for text in [*(p.read_text() for p in logs), *(json.dumps(e) for _, e in events)]:
            assert pw not in text
    finally:
        if worker.proc is not None:
            stop_worker(worker.proc)
        stack.down(settings)
