"""Bounded backoff with jitter (socratext/retry.py), the OCR stage's use of it for object-store outages,
and extractor plugins named `package.module:Name` (what the fault tests use to inject a failing model)."""

from __future__ import annotations

import io
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from socratext.errors import OBJECT_NOT_FOUND, STORAGE_UNAVAILABLE, SocratextError
from socratext.pipeline import load_extractor, load_plugin_extractor
from socratext.retry import Backoff, retry_call
from socratext.settings import Settings
from streams import events as ev
from streams.agents.ocr import OcrDeps, process_ocr_event
from streams.topics import DEADLETTER, OCR


@given(st.integers(1, 12), st.floats(0.0, 5.0), st.floats(0.0, 60.0), st.integers(0, 2**32))
def test_pauses_stay_within_their_bounds(attempts: int, base: float, extra: float, seed: int) -> None:
    policy = Backoff(attempts, base, base + extra)
    pauses = list(policy.delays(random.Random(seed)))
    assert len(pauses) == attempts - 1
    for n, p in enumerate(pauses):
        assert base <= p <= min(base + extra, base * 2 ** (n + 1)) + 1e-9
    assert policy.min_total_s() - 1e-6 <= sum(pauses) <= policy.max_total_s() + 1e-6


def test_ceilings_grow_exponentially_then_cap_and_pauses_are_jittered() -> None:
    policy = Backoff(attempts=7, base_s=0.5, max_s=5.0)
    assert [policy.ceiling(n) for n in range(6)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert policy.min_total_s() == 3.0 and policy.max_total_s() == 22.0
    draws = [tuple(policy.delays(random.Random(seed))) for seed in range(20)]
    assert len(set(draws)) == 20, "pauses must differ between callers (jitter)"
    third = [d[2] for d in draws]
    assert min(third) < 2.0 < max(third), "jitter must spread over [base, ceiling]"


@pytest.mark.parametrize("args", [(0, 1.0, 2.0), (3, -1.0, 2.0), (3, 2.0, 1.0)])
def test_invalid_policies_are_refused(args: tuple[int, float, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(*args)


def test_retry_call_retries_only_what_is_retryable_and_gives_up_after_the_last_attempt() -> None:
    slept: list[float] = []
    seen: list[int] = []
    calls = iter([ConnectionError("down"), ConnectionError("down"), "ok"])

    def flaky() -> str:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    policy = Backoff(3, 1.0, 4.0)
    out = retry_call(flaky, policy, lambda e: isinstance(e, ConnectionError), sleep=slept.append,
                     rng=random.Random(1), on_retry=lambda n, p, e: seen.append(n))
    assert out == "ok" and seen == [1, 2] and len(slept) == 2 and all(1.0 <= s <= 4.0 for s in slept)

    attempts = []

    def always_down() -> None:
        attempts.append(1)
        raise ConnectionError("still down")

    with pytest.raises(ConnectionError):
        retry_call(always_down, policy, lambda e: True, sleep=lambda s: None)
    assert len(attempts) == 3

    attempts.clear()

    def broken() -> None:
        attempts.append(1)
        raise KeyError("a bug, not an outage")

    with pytest.raises(KeyError):
        retry_call(broken, policy, lambda e: isinstance(e, ConnectionError), sleep=lambda s: None)
    assert len(attempts) == 1


def test_fixed_delays_replace_the_policy() -> None:
    slept: list[float] = []
    with pytest.raises(ConnectionError):
        retry_call(lambda: (_ for _ in ()).throw(ConnectionError()), Backoff(9), lambda e: True,
                   sleep=slept.append, delays=iter([0.0, 0.25]))
    assert slept == [0.0, 0.25]


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (60, 90), "white").save(buf, "JPEG")
    return buf.getvalue()


class _Page:
    def __init__(self) -> None:
        from socratext.document import OcrPage

        self.page = OcrPage([], 60, 90)
        self.timings_ms = {"ocr": 1.0}


def _upload(rid: str, key: str) -> bytes:
    return ev.dumps({"schema_version": 1, "receipt_id": rid, "bucket": "receipts", "key": key,
                     "uploaded_at": "2026-11-25T10:00:00Z"})


def _deps(fetch, slept: list[float], attempts: int = 4) -> OcrDeps:
    from socratext.imaging import load_images

    settings = Settings(s3_allowed_buckets="receipts", s3_retry_attempts=attempts, s3_retry_base_s=0.5,
                        s3_retry_max_s=2.0)
    return OcrDeps(settings, fetch, load_images, lambda imgs: [_Page() for _ in imgs], sleep=slept.append)


def test_ocr_stage_rides_out_an_outage_with_the_settings_backoff() -> None:
    calls: list[str] = []

    def down_twice(bucket: str, key: str, max_bytes: int) -> bytes:
        calls.append(key)
        if len(calls) <= 2:
            raise SocratextError(STORAGE_UNAVAILABLE, "connection refused")
        return _jpeg()

    slept: list[float] = []
    outs = process_ocr_event(_upload("r1", "uploads/r1.jpg"), _deps(down_twice, slept))
    assert [o.topic for o in outs] == [OCR] and len(calls) == 3
    assert len(slept) == 2 and 0.5 <= slept[0] <= 1.0 and 0.5 <= slept[1] <= 2.0


def test_ocr_stage_dead_letters_after_the_last_attempt_and_never_retries_a_missing_object() -> None:
    calls: list[str] = []

    def fetch(bucket: str, key: str, max_bytes: int) -> bytes:
        calls.append(key)
        if key.endswith("gone.jpg"):
            raise SocratextError(OBJECT_NOT_FOUND, "no such key")
        raise SocratextError(STORAGE_UNAVAILABLE, "connection refused")

    slept: list[float] = []
    deps = _deps(fetch, slept, attempts=4)
    (out,) = process_ocr_event(_upload("r2", "uploads/down.jpg"), deps)
    assert out.topic == DEADLETTER and out.value["code"] == STORAGE_UNAVAILABLE
    assert len(calls) == 4 and len(slept) == 3 and "gave up after 4 attempts" in out.value["message"]
    calls.clear()
    (out,) = process_ocr_event(_upload("r3", "uploads/gone.jpg"), deps)
    assert out.value["code"] == OBJECT_NOT_FOUND and len(calls) == 1 and len(slept) == 3


class _Plugin:
    name, version = "plugin", "1"

    def label(self, pages, images=None):  # noqa: ANN001, ANN201
        return [[] for _ in pages]


PLUGIN_INSTANCE = _Plugin()


def test_extractor_plugins_load_from_a_module_path() -> None:
    ext = load_extractor("tests.test_retry:_Plugin", Settings())
    assert isinstance(ext, _Plugin) and ext.name == "plugin"
    assert load_plugin_extractor("tests.test_retry:PLUGIN_INSTANCE") is PLUGIN_INSTANCE
    with pytest.raises(ValueError, match="cannot load"):
        load_extractor("tests.test_retry:Missing", Settings())
    with pytest.raises(ValueError, match="not an Extractor"):
        load_plugin_extractor("tests.test_retry:__name__")
    with pytest.raises(ValueError, match="without arguments"):
        load_plugin_extractor("tests.test_retry:_deps")
