"""The local stack: its generated configuration (plain tests) and the real Kafka + MinIO (marked `stack`)."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from urllib.parse import unquote

import pytest
from pydantic import SecretStr

from socratext import errors
from socratext import stack as local_stack
from socratext.errors import SocratextError
from socratext.settings import Settings
from socratext.stack import kafka as stack_kafka
from socratext.storage import ObjectStore
from socratext.topics import topic_partitions

# ------------------------------------------------------------------ configuration, no processes needed


def test_kafka_properties_single_node_kraft(tmp_path) -> None:
    settings = Settings(kafka_bootstrap="localhost:29092", state_dir=tmp_path)
    props = dict(
        line.split("=", 1) for line in local_stack.kafka_properties(settings, tmp_path / "d").splitlines()
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["auto.create.topics.enable"] == "false"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
    ):
        assert props[key] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["log.dirs"] == str(tmp_path / "d")


def test_endpoints_from_settings() -> None:
    settings = Settings(kafka_bootstrap="broker.local:9092,other:9092", s3_endpoint="http://localhost:9000")
    assert str(local_stack.kafka_endpoint(settings)) == "broker.local:9092"
    assert str(local_stack.kafka_controller(settings)) == "broker.local:9093"
    assert str(local_stack.minio_endpoint(settings)) == "127.0.0.1:9000"


def test_every_settings_topic_is_created() -> None:
    settings = Settings(
        topic_uploaded="u", topic_ocr="o", topic_extracted="e", topic_review="r", topic_deadletter="d"
    )
    parts = topic_partitions(settings)
    assert set(parts) == {"u", "o", "e", "r", "d"}
    assert all(n >= 1 for n in parts.values())


def test_cluster_ids_are_kafka_format() -> None:
    ids = {stack_kafka._new_cluster_id() for _ in range(20)}
    assert len(ids) == 20
    assert all(len(i) == 22 and "=" not in i and "+" not in i and "/" not in i for i in ids)


def test_cluster_ids_never_start_like_an_option(monkeypatch) -> None:
    """A base64url id starting with '-' made `kafka-storage format -t <id>` fail (one in 32 CI runs)."""
    draws = iter([b"\xfb" + bytes(15), b"\x00" * 16])  # the first encodes to "-w...", the second to "AAAA..."
    monkeypatch.setattr(stack_kafka.uuid, "uuid4", lambda: type("U", (), {"bytes": next(draws)})())
    cid = stack_kafka._new_cluster_id()
    assert cid == "A" * 22


def test_minio_env_wires_notifications_to_uploaded_topic(tmp_path) -> None:
    settings = Settings(state_dir=tmp_path, topic_uploaded="up.topic", kafka_bootstrap="localhost:29092")
    env = local_stack.minio_env(settings)
    target = local_stack.NOTIFY_TARGET
    assert env[f"MINIO_NOTIFY_KAFKA_ENABLE_{target}"] == "on"
    assert env[f"MINIO_NOTIFY_KAFKA_TOPIC_{target}"] == "up.topic"
    assert env[f"MINIO_NOTIFY_KAFKA_BROKERS_{target}"] == "127.0.0.1:29092"
    assert env["MINIO_ROOT_PASSWORD"] == settings.s3_secret_key.get_secret_value()
    assert local_stack.NOTIFY_ARN == f"arn:minio:sqs::{target}:kafka"


def test_pid_file_of_a_foreign_or_dead_process_is_not_ours(tmp_path) -> None:
    settings = Settings(state_dir=tmp_path)
    pid_file = local_stack.KAFKA.pid_file(settings)
    pid_file.write_text(f"{os.getpid()}\n")  # alive, but this is pytest, not a broker
    assert local_stack.KAFKA.pid(settings) is None
    assert local_stack.stop_component(local_stack.KAFKA, settings) is False  # and is never signalled
    assert not pid_file.exists()
    status = local_stack.status(
        Settings(state_dir=tmp_path, kafka_bootstrap="127.0.0.1:9", s3_endpoint="http://127.0.0.1:9")
    )
    assert status["kafka"]["ready"] is False and status["minio"]["ready"] is False


# ------------------------------------------------------------------ the real stack


def _consumer_at_end(settings: Settings, topic: str):
    """A group-less consumer positioned at the current end of every partition of `topic`."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=str(local_stack.kafka_endpoint(settings)), enable_auto_commit=False, group_id=None
    )
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    assert parts, f"topic {topic} has no partitions"
    consumer.assign(parts)
    consumer.seek_to_end(*parts)
    for tp in parts:
        consumer.position(tp)  # resolve the lazy seek now, before the object is written
    return consumer


def _collect(consumer, until: float, stop_at: str | None = None) -> list[dict]:
    """Events read until the deadline, or until one with Key == stop_at arrives."""
    seen: list[dict] = []
    while time.monotonic() < until:
        for records in consumer.poll(timeout_ms=500).values():
            seen += [json.loads(r.value) for r in records]
        if stop_at and any(e.get("Key") == stop_at for e in seen):
            break
    return seen


@pytest.mark.stack
def test_topics_exist_with_partitions(stack: Settings) -> None:
    from kafka.admin import KafkaAdminClient

    wanted = topic_partitions(stack)
    admin = KafkaAdminClient(bootstrap_servers=str(local_stack.kafka_endpoint(stack)))
    try:
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(list(wanted))}
    finally:
        admin.close()
    assert described == wanted


@pytest.mark.stack
def test_up_is_idempotent_and_status_ready(stack: Settings) -> None:
    addrs = local_stack.up(stack)
    assert addrs["kafka_bootstrap"] == str(local_stack.kafka_endpoint(stack))
    info = local_stack.status(stack)
    assert info["kafka"]["ready"] and info["minio"]["ready"]


@pytest.mark.stack
def test_put_get_roundtrip_and_errors(stack: Settings) -> None:
    store = ObjectStore(stack)
    key = f"tests/{uuid.uuid4().hex}/ticket.bin"
    payload = bytes(range(256)) * 4
    store.put_bytes(stack.s3_bucket, key, payload, "application/octet-stream")
    assert store.get_bytes(stack.s3_bucket, key) == payload
    assert store.list_keys(stack.s3_bucket, key.rsplit("/", 1)[0]) == [key]
    with pytest.raises(SocratextError) as info:
        store.get_bytes(stack.s3_bucket, key, max_bytes=100)
    assert info.value.code == errors.FILE_TOO_LARGE
    with pytest.raises(SocratextError) as info:
        store.get_bytes(stack.s3_bucket, key + ".missing")
    assert info.value.code == errors.OBJECT_NOT_FOUND


@pytest.mark.stack
def test_wrong_credentials_are_access_denied(stack: Settings) -> None:
    bad = stack.model_copy(update={"s3_secret_key": SecretStr("not-the-secret")})
    with pytest.raises(SocratextError) as info:
        ObjectStore(bad).get_bytes(stack.s3_bucket, "incoming/whatever.jpg")
    assert info.value.code == errors.ACCESS_DENIED


@pytest.mark.stack
def test_upload_under_prefix_publishes_event(stack: Settings) -> None:
    consumer = _consumer_at_end(stack, stack.topic_uploaded)
    try:
        store = ObjectStore(stack)
        tag = uuid.uuid4().hex
        outside = f"results/{tag}.json"
        inside = f"{local_stack.UPLOAD_PREFIX}{tag}.jpg"
        store.put_bytes(stack.s3_bucket, outside, b"{}", "application/json")
        store.put_bytes(stack.s3_bucket, inside, b"\xff\xd8fake", "image/jpeg")
        target = f"{stack.s3_bucket}/{inside}"
        seen = _collect(consumer, time.monotonic() + 30, stop_at=target)
        matching = [e for e in seen if e.get("Key") == target]
        assert matching, f"no MinIO event for {inside}; saw {[e.get('Key') for e in seen]}"
        event = matching[0]
        assert event["EventName"].startswith("s3:ObjectCreated:")
        record = event["Records"][0]
        assert record["s3"]["bucket"]["name"] == stack.s3_bucket
        assert unquote(record["s3"]["object"]["key"]) == inside  # S3 event keys are URL-encoded
        assert record["s3"]["object"]["size"] == 6
        # The object outside the prefix must never fire; give it a moment to show up if it wrongly would.
        seen += _collect(consumer, time.monotonic() + 2.0)
        assert not [e for e in seen if e.get("Key") == f"{stack.s3_bucket}/{outside}"]
    finally:
        consumer.close()


@pytest.mark.stack
@pytest.mark.slow
def test_event_created_while_kafka_down_is_delivered_after_restart(tmp_path: Path) -> None:
    """On a stack of its own (free ports), which it restarts: MinIO queues the bucket notification
    while the broker is down and delivers it once it is back."""
    from tests.conftest_stack import private_stack

    with private_stack(tmp_path / "state") as stack:
        _notification_survives_a_kafka_restart(stack)


def _notification_survives_a_kafka_restart(stack: Settings) -> None:
    store = ObjectStore(stack)
    key = f"{local_stack.UPLOAD_PREFIX}{uuid.uuid4().hex}.jpg"
    from kafka import KafkaConsumer, TopicPartition

    ep = str(local_stack.kafka_endpoint(stack))
    probe = KafkaConsumer(bootstrap_servers=ep, group_id=None)
    parts = [
        TopicPartition(stack.topic_uploaded, p) for p in probe.partitions_for_topic(stack.topic_uploaded)
    ]
    ends = probe.end_offsets(parts)
    probe.close()

    # MinIO queues the event while the broker is down and delivers it once it is back.
    local_stack.restart_kafka(
        stack, while_down=lambda: store.put_bytes(stack.s3_bucket, key, b"during outage", "image/jpeg")
    )

    consumer = KafkaConsumer(bootstrap_servers=ep, group_id=None, enable_auto_commit=False)
    try:
        consumer.assign(parts)
        for tp in parts:
            consumer.seek(tp, ends[tp])
        target = f"{stack.s3_bucket}/{key}"
        seen = _collect(consumer, time.monotonic() + 90, stop_at=target)
        assert any(e.get("Key") == target for e in seen), "event lost across a Kafka restart"
    finally:
        consumer.close()


def test_a_missing_stack_fails_where_it_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    """`.ci/run` sets SOCRATEXT_REQUIRE_STACK=1: there, a missing broker or object store is a failure,
    not a silent skip; elsewhere (a laptop without the stack) it stays a skip with its reason."""
    from tests.conftest_stack import skip_unless_required

    monkeypatch.delenv("SOCRATEXT_REQUIRE_STACK", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no broker"):
        skip_unless_required("no broker")
    monkeypatch.setenv("SOCRATEXT_REQUIRE_STACK", "1")
    with pytest.raises(pytest.fail.Exception, match="no broker"):
        skip_unless_required("no broker")
