"""The learning loop end to end, through the real broker and object store (issue 5):

1. a tiny layout model v1 is trained with a planted weakness — the total's words are cut out of its
   training pages, so it never labels a total — and published to the model registry as current;
2. a worker follows `registry:<name>`; receipts uploaded to it come out without their total, with a low
   confidence, and go to `receipts.review`;
3. the collector stores them as review records; a reviewer's corrections (the built-in JSON path) give
   the true field values, which become word labels on the worker's own OCR words;
4. `python -m training.train --init-from registry:<name> --reviewed s3 --held-out DIR --s3` retrains from
   v1 on the reviewed receipts plus the base data, scores both models on a fixed held-out set and, being
   better, publishes v2 as current;
5. the running worker (same process) switches to v2 — receipts uploaded while it retrains come out
   exactly once each, from v1 or v2 — and the same receipts uploaded again (new ids) now come out with
   the right total, from v2.

Tiny and seeded: 10 base + 8 held-out synthetic receipts (clean renders, Tesseract OCR cached
under ~/.cache/socratext), a 0.8 M-parameter LayoutLMv3-mini, seeded, one thread. The held-out set is
scored on the output fields' labels (line-item labels are "O" there): it measures what the receipts'
JSON carries, which is what the loop is meant to fix.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from socratext.document import OcrPage
from socratext.labels import FIELDS
from socratext.settings import REPO_ROOT, Settings
from streams.topics import EXTRACTED, REVIEW
from tests.streamkit import NONCE, Worker, collect

pytestmark = [pytest.mark.stack, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:.*(read_text|open_text) is deprecated:DeprecationWarning")]

BASE_SEEDS = range(7800, 7810)
HELD_OUT_SEEDS = range(7840, 7848)
UPLOAD_SEEDS = range(7830, 7838)
COMMON = ["--batch-size", "4", "--threads", "1", "--max-length", "256", "--stride", "64",
          "--val-fraction", "0", "--seed", "1"]
V1 = ["--model", "layoutlmv3-mini", "--vocab-size", "600", "--epochs", "30", "--patience", "30",
      "--lr", "2e-3"]
V2 = ["--epochs", "20", "--patience", "20", "--lr", "1e-3", "--reviewed-repeat", "3"]


def _datasets(root: Path) -> tuple[Path, Path]:
    """Base training pages with the planted weakness, and the fixed held-out pages (field labels only)."""
    from training.datasets.common import LabeledPage
    from training.datasets.synthetic import load_synthetic
    from training.review.records import page_record, write_records

    def weak(lp: LabeledPage) -> LabeledPage:
        keep = [i for i, lab in enumerate(lp.labels) if lab != "total"]
        page = OcrPage([lp.page.words[i] for i in keep], lp.page.width, lp.page.height)
        return LabeledPage(page, [lp.labels[i] for i in keep], id=lp.id)

    def fields_only(lp: LabeledPage) -> LabeledPage:
        return LabeledPage(lp.page, [lab if lab in FIELDS else "O" for lab in lp.labels], id=lp.id)

    base = [weak(load_synthetic(s, ocr=True, degrade=False)) for s in BASE_SEEDS]
    held = [fields_only(load_synthetic(s, ocr=True, degrade=False)) for s in HELD_OUT_SEEDS]
    assert all("total" not in p.labels for p in base) and all("total" in p.labels for p in held)
    write_records([page_record(p, f"base-{i}") for i, p in enumerate(base)], root / "base")
    write_records([page_record(p, f"held-{i}") for i, p in enumerate(held)], root / "held-out")
    return root / "base", root / "held-out"


def _images(tag: str, seeds: range = UPLOAD_SEEDS) -> list[tuple[str, bytes, dict[str, str]]]:
    """The upload receipts as JPEGs; `tag` in a JPEG comment gives the same pixels new receipt ids."""
    from training.synth.generator import generate_receipt

    out = []
    for seed in seeds:
        r = generate_receipt(seed, degrade=False)
        buf = io.BytesIO()
        r.image.save(buf, "JPEG", quality=90, comment=f"{NONCE}-{tag}-{seed}".encode())
        out.append((f"loop-{NONCE}-{tag}-{seed}.jpg", buf.getvalue(), dict(r.fields)))
    return out


def _train(settings: Settings, args: list[str], log: Path) -> str:
    env = {**os.environ, "SOCRATEXT_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "SOCRATEXT_S3_ENDPOINT": settings.s3_endpoint, "SOCRATEXT_S3_BUCKET": settings.s3_bucket,
           "SOCRATEXT_REVIEWED_DATASET_PREFIX": settings.reviewed_dataset_prefix,
           "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "XDG_CACHE_HOME": str(log.parent / "cache")}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "training.train", *COMMON, *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    log.write_text(out)
    assert proc.returncode == 0, out[-4000:]
    print(f"\ntraining.train {' '.join(args[:2])}: {time.monotonic() - t0:.0f} s")
    return out


def _held_out(out: str) -> tuple[float, float | None]:
    m = re.search(r"held-out \(\d+ pages\) word F1: new ([0-9.]+)(?: vs \S+ ([0-9.]+))?", out)
    assert m, out[-3000:]
    return float(m.group(1)), (float(m.group(2)) if m.group(2) else None)


def _upload(settings: Settings, files: list[tuple[str, bytes, dict[str, str]]]) -> dict[str, dict[str, str]]:
    from socratext.cli_stream import upload_files

    rows = upload_files(settings, [(name, data) for name, data, _ in files])
    return {r["receipt_id"]: truth for r, (_, _, truth) in zip(rows, files, strict=True)}


def _model_version(worker: Worker, name: str) -> str | None:
    for line in worker.metrics().splitlines():
        if line.startswith("socratext_model_info{") and f'name="{name}"' in line and line.endswith(" 1.0"):
            m = re.search(r'version="([^"]+)"', line)
            if m:
                return m.group(1)
    return None


def _end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
        return {tp.partition: off for tp, off in c.end_offsets(tps).items()}
    finally:
        c.close()


def _read_since(settings: Settings, topic: str, start: dict[int, int]) -> list[dict[str, Any]]:
    """Every event of `topic` from the offsets `start` up to its end now: a bounded read, so that
    duplicates can be counted (a listener cannot tell "no more events" from "not yet")."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in start]
        c.assign(tps)
        end = c.end_offsets(tps)
        for tp in tps:
            c.seek(tp, start[tp.partition])
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + 120
        while any(c.position(tp) < end[tp] for tp in tps) and time.monotonic() < deadline:
            for tp, msgs in c.poll(timeout_ms=500).items():
                out += [json.loads(m.value) for m in msgs if m.offset < end[tp]]
        assert all(c.position(tp) >= end[tp] for tp in tps), "could not read the topic to its end"
        return out
    finally:
        c.close()


def _total(e: dict[str, Any]) -> str | None:
    return (e["fields"].get("total") or {}).get("value")


def test_review_corrections_retrain_and_live_upgrade(stack: Settings, tmp_path: Path) -> None:
    from socratext.cli_stream import consume, started, stop_worker
    from socratext.registry import ModelRegistry
    from training.review.cli import apply_corrections
    from training.review.collect import collect as collect_reviews

    t_start = time.monotonic()
    name = f"loop-{NONCE}"
    settings = stack.model_copy(update={"review_dataset_prefix": f"datasets/review-{name}/",
                                        "reviewed_dataset_prefix": f"datasets/reviewed-{name}/"})
    registry = ModelRegistry.from_settings(settings)
    base, held_out = _datasets(tmp_path)

    # 1. v1, with the planted weakness, published as current (no current yet: the gate lets it in)
    out = _train(settings, [*V1, "--data", str(base), "--held-out", str(held_out), "--s3", "--registry-name",
                            name, "--version", "v1", "--log-dir", str(tmp_path / "runs"),
                            "--out", str(tmp_path / "v1")], tmp_path / "v1.log")
    f1_v1, _ = _held_out(out)
    assert registry.current(name) == "v1"
    assert registry.get(name, "v1").metrics["heldout_f1_total"] == 0.0, "the planted weakness"

    # 2. a worker follows the registry; the receipts come out without a right total and go to review
    worker = Worker(settings, tmp_path / "worker.log")
    worker.env.update({"SOCRATEXT_MODEL": f"registry:{name}", "SOCRATEXT_MODEL_POLL_S": "1",
                       "SOCRATEXT_REVIEW_THRESHOLD": "0.75", "XDG_CACHE_HOME": str(tmp_path / "cache")})
    worker.start()
    try:
        pid = worker.proc.pid
        assert _model_version(worker, name) == "v1"
        # one listener for the whole test (listen()'s would stop after WAIT_S, and training takes minutes)
        it = started(consume(settings, [settings.topic_extracted, settings.topic_review], timeout=1800))
        start = _end_offsets(settings, settings.topic_extracted)
        first = _upload(settings, _images("first"))
        events = collect(it, settings, set(first), topics={EXTRACTED, REVIEW},
                         until=lambda evs: {e["receipt_id"] for t, e in evs if t == EXTRACTED} >= set(first)
                         and {e["receipt_id"] for t, e in evs if t == REVIEW} >= set(first))
        extracted = {e["receipt_id"]: e for t, e in events if t == EXTRACTED}
        assert set(extracted) == set(first), "receipts lost in the first round"
        assert {e["model"]["version"] for e in extracted.values()} == {"v1"}
        assert all(e["model"]["name"] == name for e in extracted.values())
        assert sum(_total(e) == first[r]["total"] for r, e in extracted.items()) == 0
        assert {e["receipt_id"] for t, e in events if t == REVIEW} == set(first)

        # 3. collect, then correct: the reviewer gives the true values of the receipt's fields
        stats = collect_reviews(settings, group=f"review-{name}", timeout_s=120,
                                until=lambda s: s.ids >= set(first))
        assert stats.ids >= set(first), stats.summary()  # (older review events of the topic may come too)
        stored = set(registry.store.list_keys(settings.s3_bucket, settings.review_dataset_prefix))
        assert {f"{settings.review_dataset_prefix}{rid}.json" for rid in first} <= stored
        saved, failed = apply_corrections(settings, {rid: dict(t) for rid, t in first.items()})
        if failed:  # a field the OCR misread cannot be placed: the reviewer sends the total alone
            more, still = apply_corrections(settings, {rid: {"total": first[rid]["total"]} for rid in failed})
            saved += more
            assert not still, still
        assert saved == len(first)

        # 4. retrain from v1 on reviewed + base data; receipts keep flowing meanwhile
        during = _upload(settings, _images("during", UPLOAD_SEEDS[:4]))
        out = _train(settings, [*V2, "--init-from", f"registry:{name}", "--data", str(base),
                                "--reviewed", "s3", "--held-out", str(held_out), "--s3", "--version", "v2",
                                "--run-name", f"{name}-v2",
                                "--log-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "v2")],
                     tmp_path / "v2.log")
        f1_new, f1_current = _held_out(out)
        assert f1_current == pytest.approx(f1_v1, abs=1e-4), "the current model is scored on the same set"
        assert f1_new > f1_current, out[-3000:]
        assert registry.current(name) == "v2" and "published" in out
        v2 = registry.get(name, "v2")
        assert v2.metrics["heldout_macro_f1"] == pytest.approx(f1_new, abs=1e-4)
        assert "model_card.md" in v2.files and any(f.endswith(".safetensors") for f in v2.files)
        assert registry.store.list_keys(settings.s3_bucket, f"runs/{name}-v2/"), "TensorBoard logs"

        # 5. the same worker process switches to v2 ...
        deadline = time.monotonic() + 90
        while _model_version(worker, name) != "v2" and time.monotonic() < deadline:
            assert worker.proc.poll() is None, worker.log.read_text()[-3000:]
            time.sleep(0.5)
        assert _model_version(worker, name) == "v2" and worker.proc.pid == pid
        # ... and the same receipts, uploaded again, now come out right
        again = _upload(settings, _images("again"))
        events += collect(it, settings, set(during) | set(again), topics={EXTRACTED},
                          until=lambda evs: {e["receipt_id"] for _, e in evs} >= set(during) | set(again))
        time.sleep(3)  # time for a would-be duplicate to arrive
    finally:
        stop_worker(worker.proc)
    ours = set(first) | set(during) | set(again)
    extracted_all = [e for e in _read_since(settings, settings.topic_extracted, start)
                     if e.get("receipt_id") in ours]
    ids = [e["receipt_id"] for e in extracted_all]
    assert sorted(ids) == sorted(ours), "a receipt was lost or duplicated"
    by_id = {e["receipt_id"]: e for e in extracted_all}
    assert {by_id[r]["model"]["version"] for r in during} <= {"v1", "v2"}
    assert {by_id[r]["model"]["version"] for r in again} == {"v2"}
    right = sum(_total(by_id[r]) == again[r]["total"] for r in again)
    # Measured: 8/8 in three runs, each with held-out F1 v1 0.3493 → v2 0.3977: training is reproducible
    # now that the WordPiece vocabulary (socratext.model.tokenizer.learn_vocab) and the order of the reviewed
    # receipts (training.data.content_key) no longer depend on hash order or on receipt ids. Before, runs
    # differed and got 6/8 to 8/8 (CI failed at 6). The bound leaves one miss for another CPU's rounding.
    assert right >= len(again) - 1, {r: (_total(by_id[r]), again[r]["total"]) for r in again}
    versions_during = [by_id[r]["model"]["version"] for r in during]
    misses = {r: (_total(by_id[r]), t["total"]) for r, t in again.items() if _total(by_id[r]) != t["total"]}
    print(f"held-out macro F1 (field labels, {len(HELD_OUT_SEEDS)} receipts): v1 {f1_v1:.4f} → "
          f"v2 {f1_new:.4f}; totals right: {right}/{len(again)} (v1: 0/{len(first)}); during the retrain "
          f"{versions_during.count('v1')} receipts from v1, {versions_during.count('v2')} from v2; "
          f"{time.monotonic() - t_start:.0f} s; missed (got, true): {misses}")
    (tmp_path / "figures.json").write_text(json.dumps({"v1": f1_v1, "v2": f1_new, "right": right}))
