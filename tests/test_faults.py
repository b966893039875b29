"""Fault tests through the real broker and object store: nothing lost, duplicates counted.

Two worker subprocesses serve the module, one per stage (`--stage ocr`, `--stage extract`), so each stage
can be killed on its own. Every test counts what went in (uploads) and what came out (extracted or
dead-letter events) with a `read_committed` consumer, deduplicating by receipt id:

    lost       = uploads with no extracted and no dead-letter event (must be 0)
    duplicated = output events beyond the first per receipt (must be 0: delivery is exactly once,
                 streams/delivery.py; OCR pages are counted too)

Each test prints one line `FAULT | <fault> | <what happened> | in=.. out=.. lost=.. duplicated=.. | ..s`
(shown even without -s) for the reliability table. Faults: SIGKILL of either stage at each point of a
transaction (before its first send, between two sends, after the sends before the commit: the worker is
held there by `SOCRATEXT_FAULT_PAUSE_AT`, and the group's committed offset is shown to be behind the input
before the kill), SIGKILL mid-batch at a random moment, one of two extraction workers of the group killed
with a batch in flight (the other takes its partitions over), a model that raises on one receipt of a
batch, the object store down for less and for more than the retry budget, a broker restart. Every wait is
bounded; tests that stop a service restore it.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from socratext import stack as stack_mod
from socratext.cli_stream import make_producer, stop_worker, upload_files
from socratext.document import OcrPage, WordLabel
from socratext.errors import MODEL_FAILED, STORAGE_UNAVAILABLE
from socratext.pipeline import receipt_id_for
from socratext.retry import Backoff
from socratext.settings import Settings
from streams.events import dumps, now_iso
from streams.topics import DEADLETTER, EXTRACTED, OCR, REVIEW, UPLOADED
from tests.conftest_stack import private_stack
from tests.streamkit import NONCE, Worker, receipt_images

pytestmark = [pytest.mark.stack, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:.*(read_text|open_text) is deprecated:DeprecationWarning")]

MARKER = "KABOOM"
"""A receipt showing this word makes `RaisingExtractor` raise (the model fault)."""
RETRY = Backoff(attempts=8, base_s=1.0, max_s=3.0)
"""The OCR worker's object-store retry budget here: rides out any outage under 7 s, gives up within 20 s."""
WAIT_S = 150.0


class RaisingExtractor:
    """The rules extractor, except that it raises on any page with a word containing `MARKER` — a model
    that breaks on one receipt. Loaded in the extraction worker as `tests.test_faults:RaisingExtractor`."""

    name = "rules-raising"
    version = "1"

    def __init__(self) -> None:
        from socratext.extractors.rules import RulesExtractor

        self.rules = RulesExtractor()

    def label(self, pages: list[OcrPage], images: list[Any] | None = None) -> list[list[WordLabel]]:
        if any(MARKER in w.text.upper() for p in pages for w in p.words):
            raise RuntimeError(f"model crashed on a {MARKER} receipt")
        return self.rules.label(pages, images)


def StageWorker(settings: Settings, log: Path, stage: str, **env: str) -> Worker:  # noqa: N802
    """A one-stage worker that sends nothing to review (the fault tests count extracted events only)."""
    return Worker(settings, log, stage, **{"SOCRATEXT_REVIEW_THRESHOLD": "0", **env})


class Ledger:
    """A `read_committed` consumer of the pipeline's topics (uploads included), positioned at
    their ends when created: what the pipeline produced since, for the receipt ids a test follows."""

    def __init__(self, settings: Settings) -> None:
        from kafka import KafkaConsumer, TopicPartition

        from socratext.kafka_config import kafka_python_kwargs

        self.names = {getattr(settings, f"topic_{t}"): t
                      for t in (UPLOADED, OCR, EXTRACTED, REVIEW, DEADLETTER)}
        self.consumer = KafkaConsumer(**kafka_python_kwargs(settings, group_id=None, enable_auto_commit=False,
                                                            isolation_level="read_committed"))
        tps = [TopicPartition(n, p) for n in self.names
               for p in sorted(self.consumer.partitions_for_topic(n) or [])]
        self.consumer.assign(tps)
        self.consumer.seek_to_end(*tps)
        for tp in tps:
            self.consumer.position(tp)  # fixed now, before the test produces anything
        self.events: list[tuple[str, dict[str, Any]]] = []
        # (topic, receipt id) → [(partition, offset)]: where each event of a receipt sits
        self.where: dict[tuple[str, str], list[tuple[int, int]]] = {}

    def close(self) -> None:
        self.consumer.close()

    def poll_until(self, cond: Callable[[], bool], wait_s: float = WAIT_S) -> bool:
        deadline = time.monotonic() + wait_s
        while not cond():
            if time.monotonic() > deadline:
                return False
            for msgs in self.consumer.poll(timeout_ms=300).values():
                for m in msgs:
                    try:
                        value = json.loads(m.value)
                    except ValueError:
                        continue
                    if isinstance(value, dict):
                        self.events.append((self.names[m.topic], value))
                        key = (self.names[m.topic], str(value.get("receipt_id")))
                        self.where.setdefault(key, []).append((m.partition, m.offset))
        return True

    def settle(self, seconds: float = 3.0) -> None:
        """Keep reading a little: late duplicates (a replayed batch) come out right after the originals."""
        end = time.monotonic() + seconds
        self.poll_until(lambda: time.monotonic() > end, seconds + 1)

    def of(self, ids: set[str], *topics: str) -> list[tuple[str, dict[str, Any]]]:
        return [(t, e) for t, e in self.events if t in topics and e.get("receipt_id") in ids]

    def out(self, ids: set[str]) -> list[tuple[str, dict[str, Any]]]:
        return self.of(ids, EXTRACTED, DEADLETTER)

    def done(self, ids: set[str]) -> Callable[[], bool]:
        return lambda: {e["receipt_id"] for _, e in self.out(ids)} >= ids

    def tally(self, ids: set[str]) -> dict[str, int]:
        per_id = Counter(e["receipt_id"] for _, e in self.out(ids))
        return {"in": len(ids), "out": sum(per_id.values()), "lost": len(ids - set(per_id)),
                "duplicated": sum(n - 1 for n in per_id.values())}


def report(capsys: pytest.CaptureFixture[str], fault: str, happened: str, tally: dict[str, int],
           seconds: float) -> None:
    line = (f"FAULT | {fault} | {happened} | in={tally['in']} out={tally['out']} lost={tally['lost']} "
            f"duplicated={tally['duplicated']} | {seconds:.1f} s")
    with capsys.disabled():
        print(f"\n{line}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """This module's own Kafka + MinIO on free ports (it stops and restarts them): never the session's
    stack nor a developer's, so the outage and restart tests always run."""
    with private_stack(tmp_path_factory.mktemp("fault-stack")) as settings:
        yield settings


@pytest.fixture(scope="module")
def workers(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Worker]]:
    logs = tmp_path_factory.mktemp("fault-workers")
    ocr = StageWorker(stack, logs / "ocr.log", "ocr", SOCRATEXT_S3_RETRY_ATTEMPTS=str(RETRY.attempts),
                      SOCRATEXT_S3_RETRY_BASE_S=str(RETRY.base_s), SOCRATEXT_S3_RETRY_MAX_S=str(RETRY.max_s))
    extract = StageWorker(stack, logs / "extract.log", "extract", SOCRATEXT_BATCH_WINDOW_S="1.0",
                          SOCRATEXT_MODEL="tests.test_faults:RaisingExtractor")
    ws = {"ocr": ocr, "extract": extract}
    try:
        for w in ws.values():
            w.start()
        yield ws
    finally:
        for w in ws.values():
            w.stop()


@pytest.fixture
def ledger(stack: Settings) -> Iterator[Ledger]:
    led = Ledger(stack)
    try:
        yield led
    finally:
        led.close()


def _files(n: int, base: int, marker_at: int | None = None) -> list[tuple[str, bytes]]:
    out = []
    for i, (name, data, _) in enumerate(receipt_images(n, base=base)):
        if i == marker_at:  # the model fault: a receipt with MARKER printed under it
            img = Image.open(io.BytesIO(data)).convert("RGB")
            marked = Image.new("RGB", (img.width, img.height + 80), "white")
            marked.paste(img, (0, 0))
            ImageDraw.Draw(marked).text((img.width // 3, img.height + 20), MARKER, fill="black", font_size=24)
            buf = io.BytesIO()
            marked.save(buf, "JPEG", quality=90, comment=f"{NONCE}-marker".encode())
            data = buf.getvalue()
        out.append((name, data))
    return out


def _upload(stack: Settings, files: list[tuple[str, bytes]]) -> set[str]:
    ids = {r["receipt_id"] for r in upload_files(stack, files)}
    assert len(ids) == len(files)
    return ids


def _assert_nothing_lost(ledger: Ledger, ids: set[str]) -> dict[str, int]:
    ok = ledger.poll_until(ledger.done(ids))
    ledger.settle()
    tally = ledger.tally(ids)
    assert ok and tally["lost"] == 0, f"lost receipts: {tally}"
    return tally


def _assert_exactly_once(ledger: Ledger, ids: set[str]) -> dict[str, int]:
    """Nothing lost, and every receipt's output (and OCR page) seen once by a read_committed consumer."""
    tally = _assert_nothing_lost(ledger, ids)
    assert tally["duplicated"] == 0, f"duplicated outputs: {tally}: " + "; ".join(
        f"{t} {e['receipt_id']} {e.get('code', '')} {e.get('extracted_at', '')}" for t, e in ledger.out(ids))
    for topic in (OCR, REVIEW):
        per_id = Counter(e["receipt_id"] for _, e in ledger.of(ids, topic))
        assert all(n == 1 for n in per_id.values()), f"published twice on {topic}: {per_id}"
    return tally


def _in_flight(settings: Settings, ledger: Ledger, topic: str, ids: set[str]) -> int:
    """How many of the events of `ids` on the logical `topic` (as the ledger read them) are at or beyond
    the worker group's committed offset of their partition: consumed, perhaps, but not committed."""
    from kafka import KafkaConsumer, TopicPartition

    from socratext.kafka_config import kafka_python_kwargs
    from streams.app import APP_ID

    name = getattr(settings, f"topic_{topic}")
    positions = [pos for rid in ids for pos in ledger.where.get((topic, rid), [])]
    assert positions, f"the ledger saw none of the {topic} events"
    # A consumer of the worker's group that never subscribes: it reads the group's offsets, joins nothing.
    consumer = KafkaConsumer(**kafka_python_kwargs(settings, group_id=APP_ID, enable_auto_commit=False))
    try:
        committed = {p: consumer.committed(TopicPartition(name, p)) or 0 for p in {p for p, _ in positions}}
    finally:
        consumer.close()
    return sum(offset >= committed[p] for p, offset in positions)


def _wait_for_log(worker: Worker, needle: str, wait_s: float = 120) -> None:
    deadline = time.monotonic() + wait_s
    while not worker.log_lines(needle):
        assert worker.proc is not None and worker.proc.poll() is None, \
            f"{worker.stage} worker exited:\n{worker.log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {needle!r} in the {worker.stage} worker's log"
        time.sleep(0.2)


def _two_page_pdf(data: bytes) -> bytes:
    """A PDF with the receipt twice: the OCR stage publishes two pages in one transaction."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "PDF", save_all=True, append_images=[img.rotate(0)], resolution=150.0)
    return buf.getvalue()


def _upload_until_held(stack: Settings, held: Worker, base: int, rounds: int = 5) -> set[str]:
    """Upload 3 receipts at a time until `held`, the second extraction worker of the group, pauses in a
    transaction (`SOCRATEXT_FAULT_PAUSE_AT=before_commit`): receipts land on partitions by their id, so
    one round may give it none. Returns the ids uploaded."""
    ids: set[str] = set()
    for round_ in range(rounds):
        ids |= _upload(stack, _files(3, base=base + 10 * round_))
        deadline = time.monotonic() + 40
        while not held.log_lines("fault pause at before_commit") and time.monotonic() < deadline:
            time.sleep(0.1)
        if held.log_lines("fault pause at before_commit"):
            return ids
    raise AssertionError("the second worker never got a receipt")


KILL_POINTS = ("before_send", "between_sends", "before_commit")


@pytest.mark.parametrize("stage", ["ocr", "extract"])
@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_9_at_each_point_of_a_transaction_publishes_every_receipt_once(
        stack: Settings, workers: dict[str, Worker], ledger: Ledger, tmp_path: Path, stage: str, point: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The stage's worker is replaced by one held at `point` of its first transaction; there it is
    SIGKILLed (its input offset provably uncommitted), the usual worker restarted: every receipt comes
    out once."""
    regular = workers[stage]
    env = {"SOCRATEXT_FAULT_PAUSE_AT": point}
    if stage == "extract":  # extracted + review: two outputs per receipt, so "between sends" exists
        env.update(SOCRATEXT_REVIEW_THRESHOLD="1.01", SOCRATEXT_BATCH_WINDOW_S="1.0")
    held = StageWorker(stack, tmp_path / f"held-{stage}.log", stage, **env)
    files = _files(3, base=8600 + 10 * KILL_POINTS.index(point) + (5 if stage == "extract" else 0))
    if stage == "ocr" and point == "between_sends":  # one upload, two pages: two sends in its transaction
        files[0] = ("two-pages.pdf", _two_page_pdf(files[0][1]))
    ids = {receipt_id_for(data) for _, data in files[1:]}
    first = receipt_id_for(files[0][1])
    ids |= {f"{first}-p1", f"{first}-p2"} if files[0][0].endswith(".pdf") else {first}
    t0 = time.monotonic()
    regular.stop()
    try:
        held.start()
        upload_ids = {r["receipt_id"] for r in upload_files(stack, files)}
        assert len(upload_ids) == len(files)
        _wait_for_log(held, f"fault pause at {point}")
        ledger.poll_until(lambda: False, 2.0)  # whatever a read_committed consumer can see now
        behind = _in_flight(stack, ledger, UPLOADED if stage == "ocr" else OCR,
                            upload_ids if stage == "ocr" else ids)
        assert behind > 0, "the held transaction's input offset is already committed: nothing in flight"
        seen_at_kill = len({e["receipt_id"] for _, e in ledger.out(ids)})
        held.kill()
    finally:
        if held.proc is not None and held.proc.poll() is None:
            held.kill()
        regular.start()
    tally = _assert_exactly_once(ledger, ids)
    report(capsys, f"SIGKILL {stage} worker {point.replace('_', ' ')} (in its transaction), restart",
           f"{behind} input event(s) uncommitted at the kill, {seen_at_kill}/{len(ids)} out; the open "
           "transaction aborted, the batch redone", tally, time.monotonic() - t0)


def test_model_raising_on_one_receipt_spares_the_rest_of_its_batch(
        stack: Settings, workers: dict[str, Worker], ledger: Ledger,
        capsys: pytest.CaptureFixture[str]) -> None:
    extract = workers["extract"]
    files = _files(4, base=8100, marker_at=1)
    marker_id = receipt_id_for(files[1][1])
    isolations = len(extract.log_lines("failed in the extractor; retrying one by one"))
    t0 = time.monotonic()
    # The extraction worker is stopped while the OCR events pile up, so that all four land in one batch.
    extract.stop()
    try:
        ids = _upload(stack, files)
        assert ledger.poll_until(lambda: {e["receipt_id"] for _, e in ledger.of(ids, OCR)} >= ids, 90), \
            "the OCR stage did not produce the four pages"
    finally:
        extract.start()
    tally = _assert_nothing_lost(ledger, ids)
    dead = {e["receipt_id"]: e for _, e in ledger.of(ids, DEADLETTER)}
    extracted = {e["receipt_id"] for _, e in ledger.of(ids, EXTRACTED)}
    assert set(dead) == {marker_id} and dead[marker_id]["code"] == MODEL_FAILED
    assert dead[marker_id]["stage"] == "extract" and MARKER in dead[marker_id]["message"]
    assert extracted == ids - {marker_id}, "the rest of the batch must come out"
    batches = extract.log_lines("failed in the extractor; retrying one by one")[isolations:]
    assert batches, "the failing receipt was not in a batch with others"
    assert extract.proc is not None and extract.proc.poll() is None and extract.healthy()
    report(capsys, "model raises on 1 receipt of a batch",
           f"batch retried one by one: {len(extracted)} extracted, 1 dead letter {MODEL_FAILED}",
           tally, time.monotonic() - t0)


def test_ocr_worker_killed_mid_batch_and_restarted_loses_nothing(
        stack: Settings, workers: dict[str, Worker], ledger: Ledger,
        capsys: pytest.CaptureFixture[str]) -> None:
    ocr = workers["ocr"]
    files = _files(5, base=8200)
    t0 = time.monotonic()
    ids = _upload(stack, files)
    assert ledger.poll_until(lambda: bool(ledger.of(ids, OCR)), 90), "no OCR output before the kill"
    ocr.kill()
    done_at_kill = len({e["receipt_id"] for _, e in ledger.of(ids, OCR)})
    assert done_at_kill < len(ids), "the OCR stage finished before the kill: nothing was in flight"
    ocr.start()
    tally = _assert_exactly_once(ledger, ids)
    assert {e["receipt_id"] for _, e in ledger.of(ids, EXTRACTED)} == ids
    ocr_dups = len(ledger.of(ids, OCR)) - len(ids)
    report(capsys, "SIGKILL OCR worker mid-batch, restart",
           f"killed with {done_at_kill}/{len(ids)} pages OCR'd; restarted; {ocr_dups} page(s) OCR'd twice",
           tally, time.monotonic() - t0)


def test_extract_worker_killed_mid_batch_and_restarted_loses_nothing(
        stack: Settings, workers: dict[str, Worker], ledger: Ledger,
        capsys: pytest.CaptureFixture[str]) -> None:
    extract = workers["extract"]
    files = _files(4, base=8300)
    t0 = time.monotonic()
    ids = _upload(stack, files)
    assert ledger.poll_until(lambda: bool(ledger.of(ids, EXTRACTED)), 90), "nothing extracted before the kill"
    extract.kill()  # some results are out (committed with their offsets), the rest in flight
    out_at_kill = len({e["receipt_id"] for _, e in ledger.of(ids, EXTRACTED)})
    assert out_at_kill < len(ids), "every receipt was out before the kill: nothing was in flight"
    extract.start()
    tally = _assert_exactly_once(ledger, ids)
    assert {e["receipt_id"] for _, e in ledger.of(ids, EXTRACTED)} == ids
    report(capsys, "SIGKILL extraction worker mid-batch, restart",
           f"killed with {out_at_kill}/{len(ids)} out; restarted; replayed from the last committed offset",
           tally, time.monotonic() - t0)


def _announce_later(stack: Settings, files: list[tuple[str, bytes]]) -> tuple[set[str], Callable[[], None]]:
    """Store the files now; return their ids and a function that publishes their upload events (so the
    worker fetches them while the store is down)."""
    from socratext.storage import ObjectStore

    store = ObjectStore(stack)
    events = []
    for _, data in files:
        rid = receipt_id_for(data)
        key = f"uploads/{rid}.jpg"
        store.put_bytes(stack.s3_bucket, key, data, "image/jpeg")
        events.append((rid, {"schema_version": 1, "receipt_id": rid, "bucket": stack.s3_bucket, "key": key,
                             "uploaded_at": now_iso(), "content_type": "image/jpeg"}))

    def announce() -> None:
        producer = make_producer(stack)
        for rid, event in events:
            producer.send(stack.topic_uploaded, key=rid.encode(), value=dumps(event))
        producer.flush(timeout=30)
        producer.close(timeout=10)

    return {rid for rid, _ in events}, announce


def test_object_store_outages_are_retried_then_dead_lettered_never_crashing(
        stack: Settings, workers: dict[str, Worker], ledger: Ledger,
        capsys: pytest.CaptureFixture[str]) -> None:
    ocr = workers["ocr"]

    # 1. A short outage: the worker fails to fetch, backs off, and gets the objects once the store is back.
    files = _files(3, base=8400)
    ids, announce = _announce_later(stack, files)
    t0 = time.monotonic()

    def first_failure_seen() -> None:
        announce()
        deadline = time.monotonic() + 60
        while not any(rid in line for line in ocr.log_lines("object store unavailable") for rid in ids):
            assert time.monotonic() < deadline, "the OCR worker never tried the store while it was down"
            time.sleep(0.2)

    stack_mod.restart_minio(stack, while_down=first_failure_seen)
    short_down = time.monotonic() - t0
    tally = _assert_nothing_lost(ledger, ids)
    assert {e["receipt_id"] for _, e in ledger.of(ids, EXTRACTED)} == ids, ledger.of(ids, DEADLETTER)
    retries = sum(rid in line for line in ocr.log_lines("object store unavailable") for rid in ids)
    report(capsys, f"object store down {short_down:.0f} s (outages under {RETRY.min_total_s():.0f} s are "
                   "always ridden out)", f"{retries} fetch retries with jittered backoff, then all extracted",
           tally, time.monotonic() - t0)

    # 2. An outage longer than the whole retry budget: dead letters storage_unavailable, the worker lives on.
    files = _files(2, base=8450)
    ids, announce = _announce_later(stack, files)
    t0 = time.monotonic()

    def down_until_dead_lettered() -> None:
        announce()
        assert ledger.poll_until(lambda: {e["receipt_id"] for _, e in ledger.of(ids, DEADLETTER)} >= ids,
                                 RETRY.max_total_s() + 60), "no dead letter while the store stayed down"

    stack_mod.restart_minio(stack, while_down=down_until_dead_lettered)
    long_down = time.monotonic() - t0
    tally = _assert_nothing_lost(ledger, ids)
    dead = ledger.of(ids, DEADLETTER)
    assert {e["code"] for _, e in dead} == {STORAGE_UNAVAILABLE}
    assert all(f"gave up after {RETRY.attempts} attempts" in e["message"] for _, e in dead), dead
    assert ocr.proc is not None and ocr.proc.poll() is None and ocr.healthy(), "the OCR worker died"
    after = _upload(stack, _files(1, base=8490))  # and it still works once the store is back
    _assert_nothing_lost(ledger, after)
    assert {e["receipt_id"] for _, e in ledger.of(after, EXTRACTED)} == after
    report(capsys, f"object store down {long_down:.0f} s (until every fetch gave up; budget "
                   f"{RETRY.min_total_s():.0f}-{RETRY.max_total_s():.0f} s of pauses)",
           f"{len(ids)} dead letters {STORAGE_UNAVAILABLE} after {RETRY.attempts} attempts; worker alive, "
           "next receipt extracted", tally, time.monotonic() - t0)


def test_broker_restart_with_receipts_in_flight_loses_nothing(
        stack: Settings, workers: dict[str, Worker], ledger: Ledger,
        capsys: pytest.CaptureFixture[str]) -> None:
    files = _files(4, base=8500)
    t0 = time.monotonic()
    ids = _upload(stack, files)
    assert ledger.poll_until(lambda: bool(ledger.of(ids, OCR)), 90), "no OCR output before the restart"
    in_flight = len(ids) - len({e["receipt_id"] for _, e in ledger.out(ids)})
    t1 = time.monotonic()
    stack_mod.restart_kafka(stack, downtime_s=2.0)
    down = time.monotonic() - t1
    tally = _assert_exactly_once(ledger, ids)
    assert {e["receipt_id"] for _, e in ledger.of(ids, EXTRACTED)} == ids
    for w in workers.values():
        assert w.proc is not None and w.proc.poll() is None, f"{w.stage} worker died with the broker"
    report(capsys, "broker restart",
           f"Kafka stopped and restarted ({down:.0f} s) with {in_flight}/{len(ids)} receipts in flight",
           tally, time.monotonic() - t0)


def test_one_of_two_extraction_workers_killed_mid_transaction_its_partner_takes_over_once(
        stack: Settings, workers: dict[str, Worker], ledger: Ledger, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Two extraction workers share the group's partitions; one is held in a transaction and SIGKILLed.
    After the group's session timeout the other is assigned its partitions, reads them again from the
    committed offsets (the killed one's open transaction aborted by the partner's producer taking over
    the partition's transactional id), and every receipt comes out once."""
    partner = workers["extract"]
    held = StageWorker(stack, tmp_path / "held-extract.log", "extract",
                       SOCRATEXT_FAULT_PAUSE_AT="before_commit", SOCRATEXT_BATCH_WINDOW_S="1.0")
    t0 = time.monotonic()
    ids: set[str] = set()
    try:
        held.start()  # joins the group: the partitions are split between the two workers
        ids = _upload_until_held(stack, held, base=8700)
        ledger.poll_until(lambda: False, 2.0)
        behind = _in_flight(stack, ledger, OCR, ids)
        assert behind > 0, "nothing in flight at the kill"
        held.kill()
    finally:
        if held.proc is not None and held.proc.poll() is None:
            held.kill()
    tally = _assert_exactly_once(ledger, ids)
    assert {e["receipt_id"] for _, e in ledger.of(ids, EXTRACTED)} == ids
    assert partner.proc is not None and partner.proc.poll() is None and partner.healthy()
    report(capsys, "1 of 2 extraction workers SIGKILLed before its commit (rebalance)",
           f"{behind} OCR event(s) uncommitted at the kill; the partner took the partitions over after the "
           "session timeout", tally, time.monotonic() - t0)


def test_sigterm_finishes_and_commits_the_batch_in_flight(
        stack: Settings, workers: dict[str, Worker], ledger: Ledger, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An extraction worker waiting for its micro-batch to fill (a long batch window) is stopped with
    SIGTERM: before exiting it extracts and commits that batch, so the receipts come out before the
    process is gone and its input offsets are committed (a restart redoes nothing)."""
    regular = workers["extract"]
    slow = StageWorker(stack, tmp_path / "slow-extract.log", "extract", SOCRATEXT_BATCH_WINDOW_S="12")
    t0 = time.monotonic()
    regular.stop()
    try:
        slow.start()
        # Healthy is not yet a group member: upload once it owns the partitions, or the OCR stage (about
        # 2 s a receipt) may publish the pages before anyone reads them and nothing is in flight at the stop.
        _wait_for_log(slow, "Executing _on_partitions_assigned")
        ids = _upload(stack, _files(3, base=8800))
        assert ledger.poll_until(lambda: {e["receipt_id"] for _, e in ledger.of(ids, OCR)} >= ids, 90), \
            "the OCR stage did not produce the pages"
        time.sleep(1.0)  # the extraction worker has fetched them into its batch, which waits for more
        assert not ledger.out(ids), "extracted before the stop: the batch was not in flight"
        behind = _in_flight(stack, ledger, OCR, ids)
        assert behind == len(ids)
        assert slow.proc is not None
        t_stop = time.monotonic()
        code = stop_worker(slow.proc, timeout=60)
        stopped_in = time.monotonic() - t_stop
        assert code == 0 and stopped_in < 60, f"not a clean stop: exit {code} after {stopped_in:.0f} s"
        assert _in_flight(stack, ledger, OCR, ids) == 0, "the batch in flight was not committed at the stop"
    finally:
        slow.stop()
        regular.start()
    tally = _assert_exactly_once(ledger, ids)
    report(capsys, "SIGTERM extraction worker with a batch in flight",
           f"{behind} OCR event(s) uncommitted at the signal; batch extracted and committed before the exit "
           f"({stopped_in:.1f} s)", tally, time.monotonic() - t0)


def test_a_frozen_worker_that_lost_its_partitions_is_fenced_when_it_wakes(
        stack: Settings, workers: dict[str, Worker], ledger: Ledger, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A zombie: an extraction worker is frozen (SIGSTOP) in the middle of a transaction, its session
    expires, its partner is given the partitions and extracts the receipts. Woken up (SIGCONT), the
    zombie tries to commit its stale batch: the partner's producer has taken the partition's
    transactional id, so the zombie is fenced and nothing of its batch becomes visible."""
    partner = workers["extract"]
    zombie = StageWorker(stack, tmp_path / "zombie-extract.log", "extract",
                         SOCRATEXT_BATCH_WINDOW_S="1.0", SOCRATEXT_FAULT_PAUSE_AT="before_commit",
                         SOCRATEXT_FAULT_PAUSE_S="4")
    t0 = time.monotonic()
    ids: set[str] = set()
    try:
        zombie.start()
        ids = _upload_until_held(stack, zombie, base=8900)
        assert zombie.proc is not None
        os.killpg(zombie.proc.pid, signal.SIGSTOP)  # frozen inside its transaction: no heartbeat either
        try:
            ledger.poll_until(lambda: False, 2.0)
            behind = _in_flight(stack, ledger, OCR, ids)
            assert behind > 0, "nothing in flight at the freeze"
            tally = _assert_exactly_once(ledger, ids)  # the partner, after the session timeout
        finally:
            os.killpg(zombie.proc.pid, signal.SIGCONT)
        deadline = time.monotonic() + 30
        while not zombie.log_lines("dropped") and time.monotonic() < deadline:
            time.sleep(0.3)
        assert zombie.log_lines("dropped"), "the woken zombie's batch was not fenced:\n" + \
            "\n".join(zombie.log.read_text().splitlines()[-20:])
        ledger.settle(5.0)
        tally = _assert_exactly_once(ledger, ids)
        assert partner.proc is not None and partner.proc.poll() is None and partner.healthy()
    finally:
        if zombie.proc is not None and zombie.proc.poll() is None:
            zombie.kill()
    report(capsys, "zombie: 1 of 2 extraction workers frozen mid-transaction (SIGSTOP), partner takes over, "
                   "zombie woken", f"{behind} OCR event(s) in flight at the freeze; the woken zombie was "
                   "fenced, its batch dropped", tally, time.monotonic() - t0)
