"""The two dataset record formats of the learning loop, and where they live.

* A **review record** (`datasets/review/<receipt_id>.json`, written by `training.review.collect`) is what
  a low-confidence receipt looked like to the model that served it: the image reference (bucket/key), the
  OCR words with boxes, the predicted word labels with their probabilities, the extracted fields and the
  model name/version. It is evidence, never edited.
* A **labelled record** (`datasets/reviewed/<receipt_id>.json`, written by the Label Studio import or the
  corrections path) is the same page with one *reviewed* label per word: a training example. The same
  format (`page` + `labels`) is what `--data DIR` / `--held-out DIR` of `training.train` read, so any
  labelled page set can be kept as a directory of these files.

Records are keyed by receipt id; the page and its word order are kept exactly as the worker's OCR produced
them, so a reviewed label always lands on the word the model saw.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from socratext import errors
from socratext.document import OcrPage
from socratext.errors import SocratextError
from socratext.labels import OTHER, WORD_LABELS
from socratext.storage import ObjectStore, check_key, map_error
from training.datasets.common import LabeledPage

REVIEW_FORMAT = "socratext.review-record/1"
LABELLED_FORMAT = "socratext.labelled-page/1"


# --- building records ----------------------------------------------------------------------------------

def review_record(event: dict[str, Any]) -> dict[str, Any]:
    """A `receipts.review` event (schema receipt_review.v1) → the review record stored for it.

    Raises `SocratextError(malformed_event)` when the event lacks what a record needs (the consumer
    dead-letters nothing itself: it logs and skips such events, as they cannot be reviewed)."""
    try:
        rid = str(event["receipt_id"])
        page = OcrPage.from_dict(event["page"])
        preds = [{"label": str(p["label"]), "probability": float(p["probability"])}
                 for p in event["word_labels"]]
        receipt = event.get("receipt") or {}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SocratextError(errors.MALFORMED_EVENT,
                             f"review event unusable: {type(exc).__name__}: {str(exc)[:120]}") from None
    if len(preds) != len(page.words):
        raise SocratextError(errors.MALFORMED_EVENT,
                             f"review event {rid}: {len(preds)} word labels for {len(page.words)} words")
    return {
        "format": REVIEW_FORMAT,
        "receipt_id": rid,
        "source": dict(event.get("source") or receipt.get("source") or {}),
        "uploaded_at": event.get("uploaded_at"),
        "extracted_at": event.get("extracted_at"),
        "model": dict(receipt.get("model") or {}),
        "confidence": receipt.get("confidence"),
        "fields": {k: v.get("value") for k, v in (receipt.get("fields") or {}).items()
                   if isinstance(v, dict)},
        "page": page.export(),
        "predictions": preds,
        **({"page_image": event["page_image"]} if isinstance(event.get("page_image"), dict) else {}),
    }


def labelled_record(record: dict[str, Any], labels: list[str], *, reviewed_by: str, reviewed_at: str,
                    fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """A review record + one reviewed label per word → the labelled record (a training example)."""
    page = OcrPage.from_dict(record["page"])
    if len(labels) != len(page.words):
        raise ValueError(f"{record['receipt_id']}: {len(labels)} labels for {len(page.words)} words")
    bad = set(labels) - set(WORD_LABELS)
    if bad:
        raise ValueError(f"{record['receipt_id']}: unknown labels {sorted(bad)}")
    predicted = [p["label"] for p in record.get("predictions", [])]
    changed = sum(a != b for a, b in zip(labels, predicted, strict=False)) if predicted else None
    return {
        "format": LABELLED_FORMAT,
        "receipt_id": record["receipt_id"],
        "source": record.get("source", {}),
        "model": record.get("model", {}),
        "page": record["page"],
        "labels": list(labels),
        "fields": dict(fields or {}),
        "review": {"by": reviewed_by, "at": reviewed_at, "changed_words": changed},
        **({"page_image": record["page_image"]} if "page_image" in record else {}),
    }


def page_record(lp: LabeledPage, receipt_id: str | None = None) -> dict[str, Any]:
    """Any `LabeledPage` as a labelled record (to keep a base or held-out set as a directory)."""
    return {"format": LABELLED_FORMAT, "receipt_id": receipt_id or lp.id or "page", "source": {},
            "page": lp.page.export(), "labels": list(lp.labels), "fields": dict(lp.fields),
            "review": {"by": lp.source or "dataset"}}


def to_labeled_page(record: dict[str, Any], source: str = "reviewed") -> LabeledPage:
    """A labelled record → the `LabeledPage` the trainer uses (labels checked against the words)."""
    if record.get("format") != LABELLED_FORMAT:
        raise ValueError(f"{record.get('receipt_id')}: not a labelled record ({record.get('format')!r})")
    labels = [lab if lab in WORD_LABELS else OTHER for lab in record["labels"]]
    image = None
    if record.get("page_image") is not None:  # the 224x224 page the serving model saw (streams.events)
        from streams.events import parse_page_image

        image = parse_page_image(record["page_image"])
    return LabeledPage(page=OcrPage.from_dict(record["page"]), labels=labels, image=image,
                       fields={k: str(v) for k, v in (record.get("fields") or {}).items() if v is not None},
                       source=source, id=f"{source}/{record['receipt_id']}")


# --- where they live -----------------------------------------------------------------------------------

def record_key(prefix: str, receipt_id: str) -> str:
    key = f"{prefix.rstrip('/')}/{receipt_id}.json"
    check_key(key)
    return key


def dumps(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, indent=None, separators=(",", ":")) + "\n").encode()


def put_if_absent(store: ObjectStore, bucket: str, key: str, data: bytes) -> bool:
    """Write an object only if no object has the key; True when this call wrote it.

    The conditional PUT (`If-None-Match: *`) makes two collectors racing on one receipt write it once; the
    HEAD before it saves the upload in the common case of a redelivered event."""
    check_key(key)
    try:
        store.client.head_object(Bucket=bucket, Key=key)
        return False
    except ClientError as exc:
        if map_error(exc, bucket, key).code != errors.OBJECT_NOT_FOUND:
            raise map_error(exc, bucket, key) from exc
    except BotoCoreError as exc:
        raise map_error(exc, bucket, key) from exc
    try:
        store.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/json",
                                IfNoneMatch="*")
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
            return False
        raise map_error(exc, bucket, key) from exc
    except BotoCoreError as exc:
        raise map_error(exc, bucket, key) from exc
    return True


def write_records(records: Iterable[dict[str, Any]], dest: str | Path, *, store: ObjectStore | None = None,
                  bucket: str | None = None, overwrite: bool = True) -> int:
    """Write records to a local directory, or (with `store`) under the key prefix `dest` of `bucket`.
    Labelled records are overwritten by default: a second review of a receipt replaces the first."""
    n = 0
    for rec in records:
        data = dumps(rec)
        if store is not None:
            key = record_key(str(dest), rec["receipt_id"])
            if overwrite:
                store.put_bytes(bucket or store.settings.s3_bucket, key, data, "application/json")
            elif not put_if_absent(store, bucket or store.settings.s3_bucket, key, data):
                continue
        else:
            d = Path(dest)
            d.mkdir(parents=True, exist_ok=True)
            tmp = d / f".{rec['receipt_id']}.json.tmp"
            tmp.write_bytes(data)
            tmp.replace(d / f"{rec['receipt_id']}.json")
        n += 1
    return n


def iter_records(src: str | Path, *, store: ObjectStore | None = None, bucket: str | None = None,
                 ) -> Iterator[dict[str, Any]]:
    """Records of a local directory (`*.json`, sorted by name) or of a key prefix in the object store
    (sorted by key), so that every reader sees them in the same order."""
    if store is not None:
        b = bucket or store.settings.s3_bucket
        prefix = str(src).rstrip("/") + "/"
        for key in sorted(store.iter_keys(b, prefix)):
            if key.endswith(".json"):
                yield json.loads(store.get_bytes(b, key))
        return
    for f in sorted(Path(src).glob("*.json")):
        yield json.loads(f.read_text(encoding="utf-8"))


def load_labelled_pages(src: str | Path, *, store: ObjectStore | None = None, bucket: str | None = None,
                        source: str = "reviewed") -> list[LabeledPage]:
    return [to_labeled_page(r, source) for r in iter_records(src, store=store, bucket=bucket)
            if r.get("format") == LABELLED_FORMAT]
