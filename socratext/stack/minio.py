"""The local MinIO server: its environment (root credentials, the Kafka notification target), start,
readiness, and the receipts bucket with the notification that turns an upload under `UPLOAD_PREFIX`
into a `receipts.uploaded` event."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from socratext.settings import Settings
from socratext.stack.kafka import kafka_endpoint, scram_user
from socratext.stack.processes import Component, Endpoint, StackError, ipv4, opt_dir, spawn

if TYPE_CHECKING:  # boto3 is imported only when the bucket is configured: `stack status` stays fast
    from socratext.storage import ObjectStore

UPLOAD_PREFIX = "incoming/"
NOTIFY_TARGET = "SOCRATEXT"  # MinIO target id: env suffix and ARN part
NOTIFY_ARN = f"arn:minio:sqs::{NOTIFY_TARGET}:kafka"
MINIO = Component("minio", "minio server")


def minio_bin() -> Path:
    found = opt_dir() / "bin" / "minio"
    if found.exists():
        return found
    on_path = shutil.which("minio")
    return Path(on_path) if on_path else found


def minio_endpoint(settings: Settings) -> Endpoint:
    url = urlparse(settings.s3_endpoint)
    return Endpoint(ipv4(url.hostname or ""), url.port or (443 if url.scheme == "https" else 80))


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
    return spawn(MINIO, settings, argv, env=minio_env(settings))


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
