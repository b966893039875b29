"""ObjectStore error mapping and guards, against botocore's Stubber (no server needed)."""

from __future__ import annotations

import io

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from socratext import errors
from socratext.errors import SocratextError
from socratext.settings import Settings
from socratext.storage import ObjectStore, check_key, make_client


@pytest.fixture()
def settings() -> Settings:
    return Settings(
        s3_endpoint="http://127.0.0.1:19000", s3_allowed_buckets="receipts, other", max_file_bytes=100
    )


@pytest.fixture()
def store(settings: Settings):
    st = ObjectStore(settings)
    with Stubber(st.client) as stub:
        st.stub = stub
        yield st
        stub.assert_no_pending_responses()


def _body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def test_get_bytes_heads_then_reads(store: ObjectStore) -> None:
    store.stub.add_response(
        "head_object", {"ContentLength": 5}, {"Bucket": "receipts", "Key": "incoming/a.jpg"}
    )
    store.stub.add_response(
        "get_object", {"Body": _body(b"hello")}, {"Bucket": "receipts", "Key": "incoming/a.jpg"}
    )
    assert store.get_bytes("receipts", "incoming/a.jpg") == b"hello"


@pytest.mark.parametrize(
    ("s3_code", "status", "expected"),
    [
        ("404", 404, errors.OBJECT_NOT_FOUND),  # HEAD on a missing key: no body, only the status
        ("NoSuchKey", 404, errors.OBJECT_NOT_FOUND),
        ("NoSuchBucket", 404, errors.OBJECT_NOT_FOUND),
        ("403", 403, errors.ACCESS_DENIED),
        ("AccessDenied", 403, errors.ACCESS_DENIED),
        ("InvalidAccessKeyId", 403, errors.ACCESS_DENIED),
        ("SlowDown", 503, errors.STORAGE_UNAVAILABLE),
        ("InternalError", 500, errors.STORAGE_UNAVAILABLE),
    ],
)
def test_head_errors_are_mapped(store: ObjectStore, s3_code: str, status: int, expected: str) -> None:
    store.stub.add_client_error("head_object", service_error_code=s3_code, http_status_code=status)
    with pytest.raises(SocratextError) as info:
        store.get_bytes("receipts", "incoming/a.jpg")
    assert info.value.code == expected


def test_get_error_after_head_is_mapped(store: ObjectStore) -> None:
    # The object can disappear between HEAD and GET.
    store.stub.add_response("head_object", {"ContentLength": 5})
    store.stub.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
    with pytest.raises(SocratextError) as info:
        store.get_bytes("receipts", "incoming/a.jpg")
    assert info.value.code == errors.OBJECT_NOT_FOUND


def test_too_large_is_refused_before_download(store: ObjectStore) -> None:
    store.stub.add_response("head_object", {"ContentLength": 101})  # no get_object queued: must not be called
    with pytest.raises(SocratextError) as info:
        store.get_bytes("receipts", "incoming/big.jpg")
    assert info.value.code == errors.FILE_TOO_LARGE


def test_explicit_max_bytes_wins(store: ObjectStore) -> None:
    store.stub.add_response("head_object", {"ContentLength": 5})
    with pytest.raises(SocratextError) as info:
        store.get_bytes("receipts", "incoming/a.jpg", max_bytes=4)
    assert info.value.code == errors.FILE_TOO_LARGE


def test_object_grown_after_head_is_refused(store: ObjectStore) -> None:
    store.stub.add_response("head_object", {"ContentLength": 5})
    store.stub.add_response("get_object", {"Body": _body(b"x" * 150)})
    with pytest.raises(SocratextError) as info:
        store.get_bytes("receipts", "incoming/a.jpg")
    assert info.value.code == errors.FILE_TOO_LARGE


@pytest.mark.parametrize(
    "key",
    ["../etc/passwd", "incoming/../../x", "incoming/./a", "/abs/key", "", "a\x00b", "a\\..\\b", "k" * 1025],
)
def test_forbidden_keys(store: ObjectStore, key: str) -> None:
    with pytest.raises(SocratextError) as info:
        store.get_bytes("receipts", key)
    assert info.value.code == errors.FORBIDDEN_KEY
    with pytest.raises(SocratextError):
        store.put_bytes("receipts", key, b"x")


@pytest.mark.parametrize(
    "key", ["incoming/a.jpg", "a..b/c", "x/..y/z.png", "deep/er/ticket 01.jpg", "é/ü.jpg"]
)
def test_ordinary_keys_pass(key: str) -> None:
    check_key(key)


def test_bucket_not_allowed(store: ObjectStore) -> None:
    for call in (
        lambda: store.get_bytes("secrets", "incoming/a.jpg"),
        lambda: store.put_bytes("secrets", "incoming/a.jpg", b"x"),
        lambda: store.list_keys("secrets"),
        lambda: store.ensure_bucket("secrets"),
    ):
        with pytest.raises(SocratextError) as info:
            call()
        assert info.value.code == errors.ACCESS_DENIED


def test_second_allowed_bucket_is_accepted(store: ObjectStore) -> None:
    store.stub.add_response(
        "put_object", {}, {"Bucket": "other", "Key": "k", "Body": b"x", "ContentType": "image/png"}
    )
    store.put_bytes("other", "k", b"x", "image/png")


def test_ensure_bucket_creates_only_when_missing(store: ObjectStore) -> None:
    store.stub.add_response("head_bucket", {}, {"Bucket": "receipts"})
    assert store.ensure_bucket("receipts") is False
    store.stub.add_client_error("head_bucket", service_error_code="404", http_status_code=404)
    store.stub.add_response("create_bucket", {}, {"Bucket": "receipts"})
    assert store.ensure_bucket("receipts") is True
    store.stub.add_client_error("head_bucket", service_error_code="403", http_status_code=403)
    with pytest.raises(SocratextError) as info:
        store.ensure_bucket("receipts")
    assert info.value.code == errors.ACCESS_DENIED


def test_list_keys_pages(store: ObjectStore) -> None:
    store.stub.add_response(
        "list_objects_v2",
        {"Contents": [{"Key": "incoming/a"}], "IsTruncated": True, "NextContinuationToken": "t"},
        {"Bucket": "receipts", "Prefix": "incoming/"},
    )
    store.stub.add_response(
        "list_objects_v2",
        {"Contents": [{"Key": "incoming/b"}], "IsTruncated": False},
        {"Bucket": "receipts", "Prefix": "incoming/", "ContinuationToken": "t"},
    )
    assert store.list_keys("receipts", "incoming/") == ["incoming/a", "incoming/b"]


def test_unreachable_endpoint_is_storage_unavailable() -> None:
    # Port 9 on loopback: connection refused at once, so this exercises the real botocore error path quickly.
    settings = Settings(s3_endpoint="http://127.0.0.1:9")
    store = ObjectStore(settings)
    with pytest.raises(SocratextError) as info:
        store.get_bytes("receipts", "incoming/a.jpg")
    assert info.value.code == errors.STORAGE_UNAVAILABLE
    cfg = store.client.meta.config  # short timeouts + few retries, not botocore's 60 s x 5
    assert cfg.connect_timeout <= 5 and cfg.retries["mode"] == "standard"
    assert cfg.retries.get("total_max_attempts", cfg.retries.get("max_attempts", 99)) <= 5


def test_credentials_not_in_repr_or_errors() -> None:
    settings = Settings(s3_endpoint="http://127.0.0.1:9", s3_secret_key="very-secret-value-123")
    store = ObjectStore(settings)
    assert "very-secret-value-123" not in repr(store)
    with pytest.raises(SocratextError) as info:
        store.put_bytes("receipts", "k", b"x")
    assert "very-secret-value-123" not in str(info.value)
    assert "very-secret-value-123" not in repr(make_client(settings).meta.config)
