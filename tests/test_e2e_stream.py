"""End to end on the real local stack: uploads → worker subprocess (`python -m streams.worker --stage all`)
→ extracted / review / dead-letter topics, metrics, exactly once across a `kill -9`, and the default model
(bundled model + rules) served by a worker as the CLI reads the same files.

One worker serves the module, with `review_threshold=1.01` so every receipt also goes to the review topic.
Each run uses fresh receipts (random seeds, a run nonce), and every check filters the consumed events by
the ids it produced, so old events on the shared topics do not matter. Every wait is bounded.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from socratext.cli_stream import make_producer, upload_files
from socratext.errors import MALFORMED_EVENT, NOT_AN_IMAGE, OBJECT_NOT_FOUND, UNKNOWN_SCHEMA_VERSION
from socratext.settings import Settings
from streams.events import dumps, now_iso, s3_receipt_id
from streams.topics import DEADLETTER, EXTRACTED, REVIEW, load_schema
from tests.conftest_stack import private_stack
from tests.streamkit import NONCE, Worker, collect, listen, receipt_images

pytestmark = [pytest.mark.stack, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:.*(read_text|open_text) is deprecated:DeprecationWarning")]


@pytest.fixture(scope="module")
def worker(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    with Worker(stack, tmp_path_factory.mktemp("worker") / "worker.log") as w:
        yield w


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
    # the original file name comes back in `source`: a consumer joins results to its files by it
    source = {r["receipt_id"]: {"bucket": r["bucket"], "key": r["key"], "filename": r["file"]} for r in rows}
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
    # no event from us; the original name in the object's metadata, as `socratext upload` writes it
    ObjectStore(stack).put_bytes(stack.s3_bucket, key, data, "image/jpeg",
                                 metadata={"filename": "re%C3%A7u%20" + name})
    events = collect(it, stack, {rid}, topics={EXTRACTED, DEADLETTER})
    assert [t for t, _ in events] == [EXTRACTED], "MinIO's notification did not come out extracted"
    assert events[0][1]["source"] == {"bucket": stack.s3_bucket, "key": key, "filename": "reçu " + name}


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
    """Exactly once: outputs and input offsets are committed together, so killing the worker right after a
    result came out and restarting it brings every receipt out, none twice (`listen` reads committed)."""
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
    assert len(first) + len(rest) == len(ids), "a receipt came out twice"
    print(f"\nafter kill -9: restarted and all {len(ids)} out in {time.monotonic() - t0:.1f} s "
          f"({len(first) + len(rest) - len(ids)} duplicates)")


def test_the_default_model_serves_through_a_worker_as_the_cli_reads_it(tmp_path: Path) -> None:
    """The service's default (the bundled model combined with the rules), not `rules`: a worker started
    without SOCRATEXT_MODEL extracts the bundled samples with the same fields as `socratext extract`
    reading the same files, right on at least 80 % of their known fields."""
    import json

    from typer.testing import CliRunner

    from socratext.cli import app
    from socratext.settings import get_settings

    sample_dir = Path(__file__).resolve().parent.parent / "socratext" / "samples"
    samples = sorted(sample_dir.glob("sample_*.jpg"))[:4]
    golds = {p.name: json.loads(p.with_suffix(".json").read_text(encoding="utf-8"))["fields"]
             for p in samples}
    env_model = os.environ.pop("SOCRATEXT_MODEL", None)
    try:
        with private_stack(tmp_path / "state") as stack:  # no other worker of the group takes a partition
            worker = Worker(stack, tmp_path / "worker.log")
            worker.env.pop("SOCRATEXT_MODEL")
            worker.start()
            try:
                it = listen(stack)
                rows = upload_files(stack, [(p.name, p.read_bytes()) for p in samples])
                ids = {r["receipt_id"] for r in rows}
                events = collect(it, stack, ids, topics={EXTRACTED, DEADLETTER})
            finally:
                worker.stop()
        get_settings.cache_clear()
        cli = CliRunner().invoke(app, ["extract", *map(str, samples)])
    finally:
        get_settings.cache_clear()
        if env_model is not None:
            os.environ["SOCRATEXT_MODEL"] = env_model
    assert cli.exit_code == 0, cli.output
    by_cli = {r["receipt_id"]: r for r in map(json.loads, cli.stdout.splitlines())}
    served = {e["receipt_id"]: e for t, e in events if t == EXTRACTED}
    assert set(served) == ids == set(by_cli), [e for t, e in events if t == DEADLETTER]
    file_of = {r["receipt_id"]: r["file"] for r in rows}
    right = total = 0
    for rid, e in served.items():
        assert e["model"]["name"].endswith("+rules"), e["model"]
        assert e["model"] == by_cli[rid]["model"]
        values = {k: f["value"] for k, f in e["fields"].items()}
        assert values == {k: f["value"] for k, f in by_cli[rid]["fields"].items()}, file_of[rid]
        gold = golds[file_of[rid]]
        total += len(gold)
        right += sum(values.get(k) == v for k, v in gold.items())
    assert right >= 0.8 * total, f"{right}/{total} fields right"
