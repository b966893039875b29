"""Thin S3 adapter (boto3) that turns every object-store failure into a `SocratextError` with a stable code.

Why a wrapper at all: the stream workers must tell "object is gone" (dead-letter, never retry) from "store is
down" (retry later) from "file is far too big" (reject before downloading), and must refuse keys and buckets
that an event could use to read outside the receipts area. Keeping those rules here means every caller
(CLI, workers, tests) applies the same ones. Credentials come from `Settings` and are never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from socratext import errors
from socratext.errors import SocratextError
from socratext.settings import Settings

log = logging.getLogger(__name__)

# S3 error codes as returned by AWS and by MinIO (HEAD responses carry only the HTTP status as code).
_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "NotFound", "404"}
_DENIED = {
    "AccessDenied",
    "Forbidden",
    "403",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
    "AccountProblem",
    "InvalidToken",
    "ExpiredToken",
}
MAX_KEY_LENGTH = 1024


def client_config() -> Config:
    """Short timeouts and few retries: a worker should hand a batch back quickly when the store is down,
    rather than hang for minutes inside botocore's default 60 s read timeout."""
    return Config(
        connect_timeout=2,
        read_timeout=15,
        retries={"mode": "standard", "max_attempts": 3},
        s3={"addressing_style": "path"},  # MinIO and other local stores have no virtual-host DNS
        signature_version="s3v4",
    )


def make_client(settings: Settings) -> BaseClient:
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint or None,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key.get_secret_value(),
        region_name=settings.s3_region,
        config=client_config(),
    )


def allowed_buckets(settings: Settings) -> frozenset[str]:
    return frozenset(b.strip() for b in settings.s3_allowed_buckets.split(",") if b.strip())


def check_key(key: str) -> None:
    """Reject keys that could address something other than a plain object below the bucket root.

    S3 itself has no directories, but keys are often mapped to paths (MinIO stores them on disk, other
    tools mirror them locally), so `..` segments, absolute keys and control characters are refused.
    """
    if not key or len(key) > MAX_KEY_LENGTH:
        raise SocratextError(errors.FORBIDDEN_KEY, f"object key must have 1..{MAX_KEY_LENGTH} characters")
    if key.startswith("/") or any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise SocratextError(
            errors.FORBIDDEN_KEY, f"object key {key!r} is absolute or has control characters"
        )
    if any(seg in ("..", ".") for seg in key.replace("\\", "/").split("/")):
        raise SocratextError(errors.FORBIDDEN_KEY, f"object key {key!r} has a '.' or '..' path segment")


def map_error(exc: Exception, bucket: str, key: str = "") -> SocratextError:
    """Translate a botocore exception into the stable error codes of `socratext.errors`."""
    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _NOT_FOUND or status == 404:
            return SocratextError(errors.OBJECT_NOT_FOUND, f"{where} does not exist")
        if code in _DENIED or status == 403:
            return SocratextError(errors.ACCESS_DENIED, f"access to {where} denied ({code or status})")
        # 5xx, throttling and anything we cannot classify: the store failed, not the receipt.
        return SocratextError(errors.STORAGE_UNAVAILABLE, f"object store error on {where}: {code or status}")
    if isinstance(exc, BotoCoreError):
        # EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError, ...
        return SocratextError(
            errors.STORAGE_UNAVAILABLE, f"object store unreachable for {where}: {type(exc).__name__}"
        )
    return SocratextError(
        errors.STORAGE_UNAVAILABLE, f"object store failure on {where}: {type(exc).__name__}"
    )


class ObjectStore:
    """Bucket/key access with the project's limits and error codes applied."""

    def __init__(self, settings: Settings, client: BaseClient | None = None) -> None:
        self.settings = settings
        self.client = client if client is not None else make_client(settings)
        self._allowed = allowed_buckets(settings)

    def __repr__(self) -> str:  # never show credentials
        return f"ObjectStore(endpoint={self.settings.s3_endpoint!r}, buckets={sorted(self._allowed)})"

    def _check_bucket(self, bucket: str) -> None:
        if bucket not in self._allowed:
            raise SocratextError(errors.ACCESS_DENIED, f"bucket {bucket!r} is not in s3_allowed_buckets")

    def get_bytes(self, bucket: str, key: str, max_bytes: int | None = None) -> bytes:
        """Download one object, refusing it before the download when HEAD says it is too large."""
        self._check_bucket(bucket)
        check_key(key)
        limit = self.settings.max_file_bytes if max_bytes is None else max_bytes
        try:
            size = int(self.client.head_object(Bucket=bucket, Key=key)["ContentLength"])
            if size > limit:
                raise SocratextError(errors.FILE_TOO_LARGE, f"s3://{bucket}/{key} has {size} bytes > {limit}")
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            try:
                # Read one byte more than allowed: the object may have been replaced since the HEAD.
                data = body.read(limit + 1)
            finally:
                body.close()
        except SocratextError:
            raise
        except (ClientError, BotoCoreError) as exc:
            raise map_error(exc, bucket, key) from exc
        if len(data) > limit:
            raise SocratextError(errors.FILE_TOO_LARGE, f"s3://{bucket}/{key} is larger than {limit} bytes")
        return data

    def put_bytes(
        self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> None:
        """Store `data`; `metadata` becomes the object's user metadata (`x-amz-meta-*`, ASCII values)."""
        self._check_bucket(bucket)
        check_key(key)
        extra = {"Metadata": metadata} if metadata else {}
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, **extra)
        except (ClientError, BotoCoreError) as exc:
            raise map_error(exc, bucket, key) from exc

    def ensure_bucket(self, bucket: str) -> bool:
        """Create the bucket if needed; returns True when it was created by this call."""
        self._check_bucket(bucket)
        try:
            self.client.head_bucket(Bucket=bucket)
            return False
        except ClientError as exc:
            if map_error(exc, bucket).code != errors.OBJECT_NOT_FOUND:
                raise map_error(exc, bucket) from exc
        except BotoCoreError as exc:
            raise map_error(exc, bucket) from exc
        try:
            self.client.create_bucket(Bucket=bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                return False
            raise map_error(exc, bucket) from exc
        except BotoCoreError as exc:
            raise map_error(exc, bucket) from exc
        log.info("created bucket %s", bucket)
        return True

    def iter_keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        self._check_bucket(bucket)
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    yield obj["Key"]
        except (ClientError, BotoCoreError) as exc:
            raise map_error(exc, bucket, prefix) from exc

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        return list(self.iter_keys(bucket, prefix))
