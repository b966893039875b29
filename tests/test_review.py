"""The review half of the learning loop: review records, corrections → word labels, the Label Studio
round trip, the collector's idempotency (fake store, and through the real broker and store), and the
retraining flags of training/train.py."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from socratext.document import OcrPage, Word
from socratext.labels import OTHER
from training.datasets.common import LabeledPage
from training.datasets.labelstudio import SAMPLE
from training.review.collect import CollectStats, store_event
from training.review.corrections import correct, load_corrections
from training.review.labelstudio import export_tasks, import_export, label_config, to_task
from training.review.records import (
    LABELLED_FORMAT,
    iter_records,
    labelled_record,
    load_labelled_pages,
    page_record,
    put_if_absent,
    review_record,
    to_labeled_page,
    write_records,
)

LINES = [["CARREFOUR", "MARKET"], ["12/03/2024", "10:42"], ["BAGUETTE", "1,20"], ["SOUS-TOTAL", "12,50"],
         ["TOTAL", "TTC", "12,50", "€"], ["CB", "12,50"]]


def _page() -> OcrPage:
    words = []
    for li, line in enumerate(LINES):
        for k, w in enumerate(line):
            words.append(Word(w, (40 + 130 * k, 40 + 50 * li, 160 + 130 * k, 80 + 50 * li), 0.9, li))
    return OcrPage(words, 800, 400)


def _event(rid: str = "rid-1", labels: dict[str, str] | None = None) -> dict[str, Any]:
    page = _page()
    labels = labels or {"CARREFOUR": "merchant_name", "MARKET": "merchant_name", "12/03/2024": "date"}
    preds = [{"label": labels.get(w.text, OTHER), "probability": 0.6} for w in page.words]
    source = {"bucket": "receipts", "key": f"uploads/{rid}.jpg"}
    receipt = {"schema_version": 1, "receipt_id": rid, "source": source,
               "model": {"name": "m", "version": "v1"}, "fields": {"date": {"value": "2024-03-12"}},
               "vat_lines": [], "items": [], "confidence": 0.3, "needs_review": True, "timings_ms": {},
               "uploaded_at": "2026-11-26T00:00:00.000Z", "extracted_at": "2026-11-26T00:00:01.000Z"}
    return {"schema_version": 1, "receipt_id": rid, "source": receipt["source"],
            "uploaded_at": receipt["uploaded_at"], "extracted_at": receipt["extracted_at"],
            "receipt": receipt, "page": page.export(), "word_labels": preds}


def _words(rec: dict[str, Any], labels: list[str], label: str) -> list[str]:
    return [w["text"] for w, lab in zip(rec["page"]["words"], labels, strict=True) if lab == label]


# --- records ---------------------------------------------------------------------------------------------

def test_review_record_keeps_what_a_reviewer_needs():
    from streams.events import review_event

    rec = review_record(_event())
    assert rec["source"] == {"bucket": "receipts", "key": "uploads/rid-1.jpg"}
    assert rec["model"] == {"name": "m", "version": "v1"} and rec["fields"] == {"date": "2024-03-12"}
    assert len(rec["predictions"]) == len(rec["page"]["words"]) == 14
    # the worker's own event builder gives the same record
    ev = _event()
    from socratext.document import WordLabel

    again = review_event({**ev["receipt"]}, _page(),
                         [WordLabel(p["label"], p["probability"]) for p in ev["word_labels"]])
    assert review_record(json.loads(json.dumps(again))) == rec


def test_review_record_rejects_unusable_events():
    from socratext.errors import SocratextError

    bad = _event()
    bad["word_labels"] = bad["word_labels"][:-1]
    with pytest.raises(SocratextError) as e:
        review_record(bad)
    assert e.value.code == "malformed_event"
    with pytest.raises(SocratextError):
        review_record({"receipt_id": "x"})


def test_labelled_records_round_trip_a_directory(tmp_path: Path):
    rec = review_record(_event())
    labels = [p["label"] for p in rec["predictions"]]
    labels[10] = "total"
    lab = labelled_record(rec, labels, reviewed_by="test", reviewed_at="now")
    assert lab["review"]["changed_words"] == 1 and lab["format"] == LABELLED_FORMAT
    with pytest.raises(ValueError):
        labelled_record(rec, labels[:-1], reviewed_by="t", reviewed_at="now")
    with pytest.raises(ValueError):
        labelled_record(rec, ["bogus"] * len(labels), reviewed_by="t", reviewed_at="now")
    lp = LabeledPage(_page(), ["O"] * 14, id="synthetic/1")
    assert write_records([lab, page_record(lp, "base-1")], tmp_path) == 2
    pages = load_labelled_pages(tmp_path)
    assert [p.id for p in pages] == ["reviewed/base-1", "reviewed/rid-1"]
    assert pages[1].labels == labels and pages[1].page == _page()
    with pytest.raises(ValueError):
        to_labeled_page(rec)  # a review record is not training data


def test_page_image_travels_from_review_event_to_training_page(tmp_path: Path):
    """The serving model's view of the page (the OCR event's 224x224 image) goes with the review event into
    the review record, the labelled record and the trainer's `LabeledPage`: a model that looks at pixels is
    retrained on what it saw. Without one, the page has no image, as before."""
    from PIL import Image

    from socratext.document import WordLabel
    from streams.events import page_image, review_event

    ev = _event("rid-img")
    scan = Image.new("RGB", (800, 400), "white")
    scan.paste((200, 30, 30), (0, 0, 400, 400))
    event = json.loads(json.dumps(review_event({**ev["receipt"]}, _page(), [
        WordLabel(p["label"], p["probability"]) for p in ev["word_labels"]], page_image(scan))))
    rec = review_record(event)  # (the event's schema is checked with a real receipt in test_agents)
    lab = labelled_record(rec, [p["label"] for p in rec["predictions"]], reviewed_by="t", reviewed_at="now")
    assert write_records([lab, labelled_record(review_record(_event("rid-plain")), ["O"] * 14,
                                               reviewed_by="t", reviewed_at="now")], tmp_path) == 2
    with_image, plain = load_labelled_pages(tmp_path)
    assert with_image.id == "reviewed/rid-img" and plain.image is None
    assert with_image.image.size == (224, 224)
    assert with_image.image.getpixel((50, 112))[0] > 150 and with_image.image.getpixel((170, 112))[1] > 200


# --- corrections -----------------------------------------------------------------------------------------

def test_corrected_total_lands_on_the_total_line_only():
    rec = review_record(_event())
    c = correct(rec, {"total": "12.50"})
    assert c.unmatched == [] and c.labels is not None
    # "12,50" is printed three times: sub-total, TOTAL TTC and the card line; the TOTAL line wins
    idx = c.matched["total"]
    assert len(idx) == 1 and rec["page"]["words"][idx[0]]["box"][1] == 40 + 50 * 4
    assert _words(rec, c.labels, "total") == ["12,50"]
    # fields that were not corrected keep the model's labels
    assert _words(rec, c.labels, "merchant_name") == ["CARREFOUR", "MARKET"]


def test_corrections_normalise_values_and_prefer_the_models_span():
    rec = review_record(_event(labels={"CB": "payment_method"}))
    c = correct(rec, {"date": "2024-03-12", "time": "10:42", "currency": "EUR"})
    assert _words(rec, c.labels, "date") == ["12/03/2024"] and _words(rec, c.labels, "time") == ["10:42"]
    assert _words(rec, c.labels, "currency") == ["€"] and _words(rec, c.labels, "payment_method") == ["CB"]
    # the model put "total" on the card line's 12,50: the value is right, so its choice stands
    rec["predictions"][13]["label"] = "total"
    c = correct(rec, {"total": "12.50"})
    assert c.matched["total"] == [13] and c.labels.count("total") == 1


def test_corrections_clear_absent_fields_and_refuse_unmatched_values():
    rec = review_record(_event())
    c = correct(rec, {"date": None, "merchant_name": "Carrefour Market"})
    assert c.labels is not None and "date" not in c.labels
    assert _words(rec, c.labels, "merchant_name") == ["CARREFOUR", "MARKET"]
    c = correct(rec, {"total": "99.99"})
    assert c.labels is None and c.unmatched == ["total"]


def test_load_corrections_both_shapes(tmp_path: Path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"r1": {"total": "1.00"}}))
    b.write_text(json.dumps([{"receipt_id": "r1", "fields": {"total": "1.00"}}]))
    assert load_corrections(a) == load_corrections(b) == {"r1": {"total": "1.00"}}
    a.write_text(json.dumps({"r1": {"totl": "1.00"}}))
    with pytest.raises(ValueError, match="unknown fields"):
        load_corrections(a)


# --- Label Studio ----------------------------------------------------------------------------------------

def test_label_studio_task_has_the_export_structure():
    rec = review_record(_event())
    task = to_task(rec)
    assert task["data"] == {"image": "s3://receipts/uploads/rid-1.jpg", "receipt_id": "rid-1"}
    pred = task["predictions"][0]
    assert pred["model_version"] == "m v1" and len(pred["result"]) == 14
    r0 = pred["result"][0]
    assert r0["value"]["x"] == pytest.approx(5.0) and r0["value"]["y"] == pytest.approx(10.0)
    assert r0["value"]["width"] == pytest.approx(15.0) and r0["value"]["height"] == pytest.approx(10.0)
    assert r0["value"]["rectanglelabels"] == ["merchant_name"] and r0["meta"] == {"text": ["CARREFOUR"]}
    assert pred["result"][4]["value"]["rectanglelabels"] == [None]  # "O", as in the project's export
    assert '<Label value="total"/>' in label_config()


def test_label_studio_task_has_the_keys_of_the_projects_real_export():
    if not SAMPLE.exists():
        pytest.skip(f"no Label Studio export at {SAMPLE}")
    r0 = to_task(review_record(_event()))["predictions"][0]["result"][0]
    sample = json.loads(SAMPLE.read_text())[0]["predictions"][0]["result"][0]
    assert set(sample) - {"score"} <= set(r0) and set(sample["value"]) <= set(r0["value"])


def test_label_studio_round_trip_puts_reviewed_labels_on_the_same_words():
    records = {r["receipt_id"]: r for r in (review_record(_event("rid-1")), review_record(_event("rid-2")))}
    tasks = json.loads(json.dumps(export_tasks(records.values())))
    # the annotator starts from the predictions, labels the total, deletes the merchant's 2nd word,
    # draws one region of their own; the second task is left unreviewed
    result = copy.deepcopy(tasks[0]["predictions"][0]["result"])
    for r in result:
        if r["meta"]["text"] == ["12,50"] and r["value"]["y"] == pytest.approx(100 * 240 / 400):
            r["value"]["rectanglelabels"] = ["total"]
        if r["meta"]["text"] == ["€"]:
            r["value"]["rectanglelabels"] = ["currency"]
    result = [r for r in result if r["meta"]["text"] != ["MARKET"]]
    result.append({"id": "Xy12", "type": "rectanglelabels", "value": {"x": 1, "y": 1, "width": 1, "height": 1,
                                                                        "rectanglelabels": ["total"]}})
    tasks[0]["id"] = 7
    tasks[0]["annotations"] = [{"id": 1, "result": result, "was_cancelled": False,
                                "updated_at": "2026-11-26T01:00:00Z"}]
    labelled, report = import_export(tasks, records)
    assert report.imported == ["rid-1"] and report.drawn_regions == 1 and len(report.not_reviewed) == 1
    lab = labelled[0]
    assert lab["page"] == records["rid-1"]["page"]
    assert _words(lab, lab["labels"], "total") == ["12,50"]
    assert _words(lab, lab["labels"], "currency") == ["€"]
    assert _words(lab, lab["labels"], "merchant_name") == ["CARREFOUR"]  # deleted region → "O"
    assert lab["review"] == {"by": "labelstudio", "at": "2026-11-26T01:00:00Z", "changed_words": 3}
    assert to_labeled_page(lab).labels == lab["labels"]


def test_label_studio_import_reads_foreign_tasks_and_unknown_ids():
    foreign = {"id": 3, "annotations": [{"id": 1, "result": [
        {"type": "rectanglelabels", "meta": {"text": ["MONOP"]}, "original_width": 1000,
         "original_height": 2000,
         "value": {"x": 10, "y": 2, "width": 30, "height": 2, "rectanglelabels": ["magasin"]}}]}]}
    unknown = {"data": {"receipt_id": "nope"}, "annotations": [{"id": 1, "result": []}]}
    labelled, report = import_export([foreign, unknown], {})
    assert report.foreign == 1 and report.unknown_receipts == ["nope"]
    assert labelled[0]["labels"] == ["merchant_name"]
    assert to_labeled_page(labelled[0]).page.words[0].text == "MONOP"


# --- the collector's idempotency -------------------------------------------------------------------------

class _FakeS3:
    """Just enough of a boto3 S3 client for `put_if_absent`, honouring If-None-Match like S3 does."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.puts = 0

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "404"}, "ResponseMetadata": {"HTTPStatusCode": 404}},
                              "HeadObject")
        return {"ContentLength": len(self.objects[Key])}

    def put_object(self, Bucket: str, Key: str, Body: bytes, ContentType: str, IfNoneMatch: str = "",  # noqa: N803
                   ) -> None:
        if IfNoneMatch == "*" and Key in self.objects:
            raise ClientError({"Error": {"Code": "PreconditionFailed"},
                               "ResponseMetadata": {"HTTPStatusCode": 412}}, "PutObject")
        self.objects[Key] = Body
        self.puts += 1


def _fake_store() -> Any:
    from socratext.settings import Settings
    from socratext.storage import ObjectStore

    return ObjectStore(Settings(), client=_FakeS3())


def test_store_event_is_idempotent_by_receipt_id():
    from socratext.settings import Settings
    from streams.events import dumps

    store, settings = _fake_store(), Settings()
    stats = CollectStats()
    raw = dumps(_event("rid-9"))
    assert store_event(raw, store, settings, stats) == "rid-9"
    changed = _event("rid-9")
    changed["receipt"]["model"]["version"] = "v2"  # the same receipt, extracted again later
    assert store_event(dumps(changed), store, settings, stats) == "rid-9"
    assert store_event(b"not json", store, settings, stats) is None
    assert (stats.seen, stats.written, stats.existing, stats.skipped) == (3, 1, 1, 1)
    key = "datasets/review/rid-9.json"
    assert list(store.client.objects) == [key] and store.client.puts == 1
    assert json.loads(store.client.objects[key])["model"]["version"] == "v1", "the first view is kept"
    # a racing writer that got in between the HEAD and the PUT: the conditional PUT refuses
    assert put_if_absent(store, "receipts", "datasets/review/other.json", b"{}") is True
    store.client.head_object = lambda **kw: (_ for _ in ()).throw(
        ClientError({"Error": {"Code": "404"}, "ResponseMetadata": {"HTTPStatusCode": 404}}, "HeadObject"))
    assert put_if_absent(store, "receipts", "datasets/review/other.json", b"{}") is False


@pytest.mark.stack
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*(read_text|open_text) is deprecated:DeprecationWarning")
def test_collector_through_the_real_broker_and_store(stack):
    from socratext.cli_stream import make_producer
    from socratext.storage import ObjectStore
    from streams.events import dumps
    from training.review.collect import collect

    run = uuid.uuid4().hex[:8]
    settings = stack.model_copy(update={"review_dataset_prefix": f"datasets/review-test-{run}/"})
    ids = [f"rv-{run}-{i}" for i in range(3)]
    producer = make_producer(settings)
    for rid in ids:
        producer.send(settings.topic_review, key=rid.encode(), value=dumps(_event(rid)))
    again = _event(ids[0])  # the same receipt once more, from another model version
    again["receipt"]["model"]["version"] = "v2"
    producer.send(settings.topic_review, key=ids[0].encode(), value=dumps(again))
    producer.send(settings.topic_review, key=b"bad", value=b'{"receipt_id": "broken"')
    producer.flush(30)
    producer.close(10)
    group = f"review-test-{run}"
    # a new group starts at the topic's beginning: older review events (other tests) are stored too
    stats = collect(settings, group=group, once=True, timeout_s=120)  # drains the topic
    assert stats.ids >= set(ids) and stats.written >= 3 and stats.existing >= 1 and stats.skipped >= 1
    store = ObjectStore(settings)
    keys = set(store.list_keys(settings.s3_bucket, settings.review_dataset_prefix))
    assert {f"{settings.review_dataset_prefix}{rid}.json" for rid in ids} <= keys
    records = {r["receipt_id"]: r for r in iter_records(settings.review_dataset_prefix, store=store)}
    assert records[ids[0]]["model"]["version"] == "v1", "the first record of a receipt is kept"
    # offsets were committed after the writes: the same group sees none of them again
    again = collect(settings, group=group, once=True, timeout_s=60)
    assert not (again.ids & set(ids)) and again.written == 0


# --- retraining flags ------------------------------------------------------------------------------------

def test_publish_decision():
    from training.publish import publish_decision

    assert publish_decision(None, None, None)[0] is True  # the first version
    assert publish_decision(0.5, 0.4, "m@v1") == (True, "held-out macro F1 0.5000 >= 0.4000 of the current "
                                                        "version m@v1")
    assert publish_decision(0.4, 0.4, "m@v1")[0] is True  # not worse is enough
    ok, why = publish_decision(0.39, 0.4, "m@v1")
    assert not ok and "< 0.4000" in why
    assert publish_decision(None, None, "m@v1")[0] is False  # nothing to compare with


def test_held_out_and_reviewed_sources_from_directories(tmp_path: Path):
    from training.data import load_data, load_held_out, load_reviewed

    lp = LabeledPage(_page(), ["merchant_name", "merchant_name"] + ["O"] * 12, id="x")
    write_records([page_record(lp, f"p{i}") for i in range(4)], tmp_path / "base")
    train, val, stats = load_data([str(tmp_path / "base")], 0, 0.25, log=lambda *_: None)
    assert len(train) == 3 and len(val) == 1
    assert stats[str(tmp_path / "base")]["labels"] == {"merchant_name": 6}
    assert len(load_held_out(str(tmp_path / "base"), log=lambda *_: None)) == 4
    assert len(load_reviewed(str(tmp_path / "base"), log=lambda *_: None)) == 4
    with pytest.raises(ValueError):
        load_held_out("nowhere", log=lambda *_: None)


def test_reviewed_receipts_train_in_content_order_whatever_their_ids(tmp_path: Path):
    """A seeded retrain must not depend on the receipt ids upstream gave the same corrected receipts."""
    from training.data import load_reviewed

    pages = [LabeledPage(_page(), [lab] * 2 + ["O"] * 12, id=lab)
             for lab in ("date", "total", "merchant_name")]
    write_records([page_record(p, f"a{i}") for i, p in enumerate(pages)], tmp_path / "one")
    write_records([page_record(p, f"z{9 - i}") for i, p in enumerate(pages)], tmp_path / "two")
    one, two = (load_reviewed(str(tmp_path / d), log=lambda *_: None) for d in ("one", "two"))
    assert [p.labels for p in one] == [p.labels for p in two]
    assert sorted(p.labels[0] for p in one) == ["date", "merchant_name", "total"]


def test_retrain_from_a_model_dir_with_reviewed_and_held_out_sets(tmp_path: Path, capsys):
    """The retraining flags wired end to end on a tiny run (no object store): --init-from a model dir,
    --reviewed DIR, --held-out DIR → both models scored, figures in the card and heldout_metrics.json."""
    from training.train import main

    rec = review_record(_event())
    labels = [p["label"] for p in rec["predictions"]]
    labels[10] = "total"
    write_records([labelled_record(rec, labels, reviewed_by="t", reviewed_at="now")], tmp_path / "reviewed")
    lp = LabeledPage(_page(), ["merchant_name", "merchant_name", "date"] + ["O"] * 11, id="x")
    write_records([page_record(lp, f"p{i}") for i in range(3)], tmp_path / "base")
    tiny = ["--max-length", "64", "--stride", "16", "--batch-size", "2", "--threads", "1", "--epochs", "1",
            "--val-fraction", "0", "--log-dir", str(tmp_path / "runs")]
    import torch

    threads = torch.get_num_threads()  # main() sets the process-wide value
    try:
        assert main(["--model", "layoutlmv3-mini", "--vocab-size", "120", "--data", str(tmp_path / "base"),
                     "--out", str(tmp_path / "v1"), "--version", "v1", *tiny]) == 0
        assert main(["--init-from", str(tmp_path / "v1"), "--data", str(tmp_path / "base"), "--reviewed",
                     str(tmp_path / "reviewed"), "--held-out", str(tmp_path / "reviewed"), "--out",
                     str(tmp_path / "v2"), "--version", "v2", *tiny]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "reviewed: 1 labelled receipts" in out and "held-out (1 pages) word F1: new" in out
    figures = json.loads((tmp_path / "v2" / "heldout_metrics.json").read_text())
    assert figures["current_model"].endswith("@v1") and "total" in figures["new"]["per_label"]
    card = (tmp_path / "v2" / "model_card.md").read_text()
    assert "## Held out" in card and "started from" in card and "reviewed:" in card


def test_review_commands_are_mounted_on_the_cli():
    from typer.testing import CliRunner

    from socratext.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["review", "--help"])
    assert res.exit_code == 0
    for cmd in ("collect", "export", "import", "correct", "label-config"):
        assert cmd in res.output
    res = runner.invoke(app, ["review", "label-config"])
    assert res.exit_code == 0 and res.output == label_config()
