"""End to end on the real local stack: uploads → worker subprocess (`python -m streams.worker --stage all`)
→ extracted / review / dead-letter topics, metrics, and at-least-once across a `kill -9`.

One worker serves the module, with `review_threshold=1.01` so every receipt also goes to the review topic.
Each run uses fresh receipts (random seeds, a run nonce), and every check filters the consumed events by
the ids it produced, so old events on the shared topics do not matter. Every wait is bounded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from PIL import Image, ImageDraw

from socratext.cli_stream import consume, make_producer, start_worker, started, stop_worker, upload_files
from socratext.errors import MALFORMED_EVENT, NOT_AN_IMAGE, OBJECT_NOT_FOUND, UNKNOWN_SCHEMA_VERSION
from socratext.settings import Settings
from streams.events import dumps, now_iso, s3_receipt_id
from streams.topics import DEADLETTER, EXTRACTED, REVIEW, load_schema

pytestmark = [pytest.mark.stack, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:.*(read_text|open_text) is deprecated:DeprecationWarning")]
WAIT_S = float(os.environ.get("SOCRATEXT_E2E_WAIT_S", "180"))
NONCE = uuid.uuid4().hex[:8]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def receipt_images(n: int, base: int = 7000) -> list[tuple[str, bytes, dict[str, str]]]:
    """(name, JPEG bytes, true fields): synthetic receipts when the generator is there, else drawn ones.

    Fixed seeds keep the content (and so the extraction) reproducible; the run nonce in a JPEG comment
    makes the bytes, hence the content-derived receipt ids, unique to this run."""
    out = []
    try:
        from training.synth.generator import generate_receipt
    except ImportError:
        generate_receipt = None
    for i in range(n):
        if generate_receipt is not None:
            synth = generate_receipt(base + i, degrade=False)
            img, truth = synth.image, dict(synth.fields)
        else:
            total = f"{random.Random(base + i).randrange(100, 9999) / 100:.2f}"
            img = Image.new("RGB", (500, 700), "white")
            draw = ImageDraw.Draw(img)
            for y, line in enumerate(["SUPERMARCHE TEST", "21/11/2026 10:42", "PAIN 1,20",
                                      f"TOTAL {total.replace('.', ',')} EUR", NONCE]):
                draw.text((40, 40 + 60 * y), line, fill="black", font_size=28)
            truth = {"total": total}
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90, comment=f"{NONCE}-{i}".encode())
        out.append((f"e2e-{NONCE}-{i}.jpg", buf.getvalue(), truth))
    return out


class Worker:
    """The worker subprocess, restartable (the kill -9 test replaces it)."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings, self.log = settings, log
        self.port = free_port()
        self.env = {"SOCRATEXT_REVIEW_THRESHOLD": "1.01", "SOCRATEXT_MODEL": "rules",
                    "SOCRATEXT_METRICS_PORT": str(self.port), "SOCRATEXT_BATCH_WINDOW_S": "0.3",
                    "SOCRATEXT_STATE_DIR": str(settings.state_dir), "OMP_THREAD_LIMIT": "1"}
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = start_worker(self.settings, self.log, "all", self.env)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"worker exited:\n{self.log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                    if json.loads(r.read())["status"] == "ok":
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"worker not healthy in 90 s:\n{self.log.read_text()[-3000:]}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return r.read().decode()


@pytest.fixture(scope="module")
def worker(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = Worker(stack, tmp_path_factory.mktemp("worker") / "worker.log")
    w.start()
    try:
        yield w
    finally:
        if w.proc is not None:
            stop_worker(w.proc)


def collect(it: Iterator[tuple[str, Any]], settings: Settings, want: set[str], *, topics: set[str],
            until: Any = None, wait_s: float = WAIT_S) -> list[tuple[str, dict[str, Any]]]:
    """Gather events of `want` ids from the started consumer until `until(events)` holds (default: one
    event per wanted id) or the wait is over."""
    names = {t: getattr(settings, f"topic_{t}") for t in topics}
    by_name = {v: k for k, v in names.items()}
    got: list[tuple[str, dict[str, Any]]] = []
    until = until or (lambda evs: {e["receipt_id"] for _, e in evs} >= want)
    deadline = time.monotonic() + wait_s
    for topic, value in it:
        if isinstance(value, dict) and topic in by_name and value.get("receipt_id") in want:
            got.append((by_name[topic], value))
            if until(got):
                break
        if time.monotonic() > deadline:
            break
    return got


def listen(settings: Settings) -> Iterator[tuple[str, Any]]:
    return started(consume(settings, [settings.topic_extracted, settings.topic_review,
                                      settings.topic_deadletter], timeout=WAIT_S))


def test_uploads_come_out_extracted_and_for_review(stack: Settings, worker: Worker) -> None:
    files = receipt_images(5)
    it = listen(stack)
    t0 = time.monotonic()
    rows = upload_files(stack, [(name, data) for name, data, _ in files])
    ids = {r["receipt_id"] for r in rows}
    assert len(ids) == 5
    events = collect(it, stack, ids, topics={EXTRACTED, REVIEW, DEADLETTER},
                     until=lambda evs: sum(t == EXTRACTED for t, _ in evs) >= 5
                     and sum(t == REVIEW for t, _ in evs) >= 5)
    elapsed = time.monotonic() - t0
    extracted = [e for t, e in events if t == EXTRACTED]
    assert [e for t, e in events if t == DEADLETTER] == []
    assert sorted(e["receipt_id"] for e in extracted) == sorted(ids), f"after {elapsed:.0f} s"
    truth = {r["receipt_id"]: f[2] for r, f in zip(rows, files, strict=True)}
    source = {r["receipt_id"]: {"bucket": r["bucket"], "key": r["key"]} for r in rows}
    right_totals = 0
    for e in extracted:
        jsonschema.validate(e, load_schema(EXTRACTED))
        assert e["source"] == source[e["receipt_id"]] and e["model"]["name"] == "rules"
        assert e["needs_review"] and e["fields"], e
        assert {"fetch", "ocr", "model", "assemble"} <= set(e["timings_ms"])
        right_totals += e["fields"].get("total", {}).get("value") == truth[e["receipt_id"]].get("total")
    assert right_totals >= 3, f"only {right_totals}/5 totals right"
    reviews = [e for t, e in events if t == REVIEW]
    assert {e["receipt_id"] for e in reviews} == ids
    for r in reviews:
        jsonschema.validate(r, load_schema(REVIEW))
        assert len(r["word_labels"]) == len(r["page"]["words"]) > 10
    print(f"\n5 receipts uploaded → extracted in {elapsed:.1f} s; totals right: {right_totals}/5")


def test_bucket_notification_upload_is_processed(stack: Settings, worker: Worker) -> None:
    from socratext.stack import UPLOAD_PREFIX
    from socratext.storage import ObjectStore

    (name, data, _), = receipt_images(1, base=7300)
    key = f"{UPLOAD_PREFIX}e2e/{name}"
    rid = s3_receipt_id(stack.s3_bucket, key, hashlib.md5(data).hexdigest())
    it = listen(stack)
    ObjectStore(stack).put_bytes(stack.s3_bucket, key, data, "image/jpeg")  # no event from us
    events = collect(it, stack, {rid}, topics={EXTRACTED, DEADLETTER})
    assert [t for t, _ in events] == [EXTRACTED], "MinIO's notification did not come out extracted"
    assert events[0][1]["source"] == {"bucket": stack.s3_bucket, "key": key}


def test_bad_input_is_dead_lettered_and_neighbours_survive(stack: Settings, worker: Worker) -> None:
    good = receipt_images(2, base=7200)
    it = listen(stack)
    producer = make_producer(stack)
    ids = {k: f"e2e-{NONCE}-{k}" for k in ("missing", "version", "badocr")}
    rows = upload_files(stack, [(good[0][0], good[0][1])], producer=producer)
    corrupt = b"definitely not an image " + NONCE.encode()
    rows += upload_files(stack, [("corrupt.jpg", corrupt)], producer=producer)
    upload = {"schema_version": 1, "bucket": stack.s3_bucket, "uploaded_at": now_iso()}
    producer.send(stack.topic_uploaded, key=b"m", value=dumps(
        {**upload, "receipt_id": ids["missing"], "key": f"uploads/nothing-{NONCE}.jpg"}))
    producer.send(stack.topic_uploaded, key=b"v", value=dumps(
        {**upload, "schema_version": 99, "receipt_id": ids["version"], "key": "uploads/x.jpg"}))
    producer.send(stack.topic_uploaded, key=b"x", value=b'{"nonce": "' + NONCE.encode() + b'", oops')
    producer.send(stack.topic_ocr, key=b"o", value=dumps({"schema_version": 1, "receipt_id": ids["badocr"]}))
    rows += upload_files(stack, [(good[1][0], good[1][1])], producer=producer)
    producer.close(timeout=10)
    good_ids = {rows[0]["receipt_id"], rows[2]["receipt_id"]}
    corrupt_id = rows[1]["receipt_id"]
    want = good_ids | {corrupt_id} | set(ids.values())
    events = collect(it, stack, want | {None}, topics={EXTRACTED, DEADLETTER},  # None: the malformed one
                     until=lambda evs: {e["receipt_id"] for t, e in evs if t == EXTRACTED} >= good_ids
                     and len({e["receipt_id"] for t, e in evs if t == DEADLETTER} & want) >= 4
                     and any(NONCE in (e.get("original") or {}).get("data", "") for t, e in evs
                             if e["receipt_id"] is None))
    dead = {e["receipt_id"]: e for t, e in events if t == DEADLETTER}
    for e in dead.values():
        jsonschema.validate(e, load_schema(DEADLETTER))
    assert {e["receipt_id"] for t, e in events if t == EXTRACTED} >= good_ids
    assert dead[corrupt_id]["code"] == NOT_AN_IMAGE and dead[corrupt_id]["stage"] == "ocr"
    assert dead[ids["missing"]]["code"] == OBJECT_NOT_FOUND
    assert dead[ids["version"]]["code"] == UNKNOWN_SCHEMA_VERSION
    assert dead[ids["badocr"]]["code"] == MALFORMED_EVENT and dead[ids["badocr"]]["stage"] == "extract"
    malformed = [e for t, e in events if t == DEADLETTER and e["receipt_id"] is None
                 and NONCE in e["original"]["data"]]
    assert malformed and malformed[0]["code"] == MALFORMED_EVENT
    assert malformed[0]["origin"]["topic"] == stack.topic_uploaded


def test_metrics_endpoint_counts(worker: Worker) -> None:
    text = worker.metrics()

    def sample(prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))

    assert sample('socratext_receipts_total{outcome="out",stage="extract"}') >= 8
    assert sample('socratext_receipts_total{outcome="out",stage="ocr"}') >= 8
    assert sample('socratext_deadletter_total{code="not_an_image"}') >= 1
    assert sample('socratext_deadletter_total{code="object_not_found"}') >= 1
    assert sample("socratext_review_total") >= 8
    assert sample("socratext_batch_size_count") >= 1 and sample("socratext_end_to_end_seconds_count") >= 8
    assert sample('socratext_stage_seconds_count{stage="ocr"}') >= 8
    assert 'socratext_model_info{name="rules"' in text


def test_kill_9_after_publishing_loses_nothing(stack: Settings, worker: Worker) -> None:
    """At-least-once: offsets are committed only after the results are published, so killing the worker
    right after a result came out and restarting it must still bring every receipt out."""
    files = receipt_images(4, base=7100)
    it = listen(stack)
    rows = upload_files(stack, [(name, data) for name, data, _ in files])
    ids = {r["receipt_id"] for r in rows}
    first = collect(it, stack, ids, topics={EXTRACTED}, until=lambda evs: len(evs) >= 1)
    assert first, "nothing came out before the kill"
    assert worker.proc is not None
    os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait(10)
    t0 = time.monotonic()
    worker.start()
    rest = collect(it, stack, ids, topics={EXTRACTED},
                   until=lambda evs: {e["receipt_id"] for _, e in evs} | {first[0][1]["receipt_id"]} >= ids)
    assert {e["receipt_id"] for _, e in first + rest} == ids
    print(f"\nafter kill -9: restarted and all {len(ids)} out in {time.monotonic() - t0:.1f} s "
          f"({len(first) + len(rest) - len(ids)} duplicates)")
