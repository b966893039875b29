"""Label Studio round trip: review records → tasks with the model's predictions pre-filled, and the
reviewed export → labelled records (training data).

Tasks have the structure of the project's Label Studio export (`../shared/data/socratext/
labelstudio_sample.json`): one `rectanglelabels` region per OCR word, `value.x/y/width/height` in percent
of `original_width/original_height` (top-left corner, y downwards), the word in `meta.text`, the label in
`value.rectanglelabels` (`[null]` for "O"), under `predictions` with the serving model's version and the
word's probability as the region `score`. Label names are Socratext's word labels (`label_config()` writes
the matching labelling interface); the sample's French names (`magasin`, `total_price`, ...) are also read.

Region ids are `w<index of the word>`, and Label Studio keeps a prediction's region ids in the annotation
made from it, so the import puts every reviewed label back on exactly the word the model saw (the page
of the review record, not a re-grouping of boxes). A region the annotator deleted is "O"; a region the
annotator drew (no word behind it) is ignored and counted. A task without a `receipt_id` (an export of
another project, such as the sample) is read geometrically by `training.datasets.labelstudio`.

Boxes are in the pixels of the image the OCR read (after the worker's resize/deskew); percentages make
a resize irrelevant, a deskew of a few degrees moves boxes by a few pixels on the original photo.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from socratext.labels import OTHER, WORD_LABELS
from training.datasets.labelstudio import LABEL_MAP, task_to_page
from training.review.records import labelled_record, page_record

FROM_NAME, TO_NAME = "label", "image"


def image_url(source: Mapping[str, str]) -> str:
    """Where Label Studio finds the image: `s3://bucket/key` (an S3 source storage connected to the
    project serves it), or the local path."""
    if "bucket" in source and "key" in source:
        return f"s3://{source['bucket']}/{source['key']}"
    return str(source.get("path", ""))


def label_config() -> str:
    """The Label Studio labelling interface for these tasks (Settings → Labeling Interface → Code)."""
    labels = "\n".join(f"    <Label value={quoteattr(lab)}/>" for lab in WORD_LABELS if lab != OTHER)
    return (f'<View>\n  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
            f'  <RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}">\n{labels}\n  </RectangleLabels>\n'
            "</View>\n")


def to_task(record: dict[str, Any]) -> dict[str, Any]:
    """One review record → one Label Studio task with the predictions pre-filled."""
    page = record["page"]
    width, height = max(1, int(page["width"])), max(1, int(page["height"]))
    results = []
    for i, (w, p) in enumerate(zip(page["words"], record["predictions"], strict=True)):
        x0, y0, x1, y1 = w["box"]
        label = p["label"] if p["label"] != OTHER else None
        results.append({
            "id": f"w{i}", "type": "rectanglelabels", "from_name": FROM_NAME, "to_name": TO_NAME,
            "original_width": width, "original_height": height, "image_rotation": 0,
            "value": {"x": 100 * x0 / width, "y": 100 * y0 / height, "width": 100 * (x1 - x0) / width,
                      "height": 100 * (y1 - y0) / height, "rotation": 0, "rectanglelabels": [label]},
            "meta": {"text": [w["text"]]}, "score": round(float(p["probability"]), 4),
        })
    model = record.get("model") or {}
    version = " ".join(str(model[k]) for k in ("name", "version") if model.get(k)) or "unknown"
    return {
        "data": {"image": image_url(record.get("source") or {}), "receipt_id": record["receipt_id"]},
        "meta": {"receipt_id": record["receipt_id"], "model": model, "confidence": record.get("confidence"),
                 "fields": record.get("fields", {})},
        "predictions": [{"model_version": version, "score": record.get("confidence"), "result": results}],
    }


def export_tasks(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [to_task(r) for r in records]


def _annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    """The task's most recent non-cancelled annotation."""
    anns = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not anns:
        return None
    return max(anns, key=lambda a: (a.get("updated_at") or "", a.get("id") or 0))


def map_label(name: str | None) -> str:
    if not name:
        return OTHER
    return name if name in WORD_LABELS else LABEL_MAP.get(name, OTHER)


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)
    not_reviewed: list[Any] = field(default_factory=list)  # tasks without an annotation
    unknown_receipts: list[str] = field(default_factory=list)  # receipt ids without a review record
    foreign: int = 0  # tasks of another project, read geometrically
    drawn_regions: int = 0  # regions with no word behind them (ignored)

    def summary(self) -> str:
        return (f"{len(self.imported)} reviewed receipts imported ({self.foreign} from foreign tasks); "
                f"{len(self.not_reviewed)} tasks not reviewed; {len(self.unknown_receipts)} unknown receipt "
                f"ids; {self.drawn_regions} drawn regions ignored")


def reviewed_labels(task: dict[str, Any], n_words: int, ann: dict[str, Any], report: ImportReport,
                    ) -> list[str]:
    labels = [OTHER] * n_words
    for r in ann.get("result") or []:
        rid = str(r.get("id", ""))
        if not (rid.startswith("w") and rid[1:].isdigit() and int(rid[1:]) < n_words):
            report.drawn_regions += 1
            continue
        names = (r.get("value") or {}).get("rectanglelabels") or (r.get("value") or {}).get("labels") or []
        labels[int(rid[1:])] = map_label(next((n for n in names if n), None))
    return labels


def import_export(tasks: Iterable[dict[str, Any]], records: Mapping[str, dict[str, Any]],
                  ) -> tuple[list[dict[str, Any]], ImportReport]:
    """A Label Studio JSON export → labelled records, using the review records (by receipt id) for the
    pages. Tasks nobody annotated are left out (they are not reviewed)."""
    report = ImportReport()
    out = []
    for task in tasks:
        ann = _annotation(task)
        if ann is None:
            report.not_reviewed.append(task.get("id"))
            continue
        at = str(ann.get("updated_at") or ann.get("created_at") or "")
        rid = (task.get("data") or {}).get("receipt_id") or (task.get("meta") or {}).get("receipt_id")
        if not rid:
            lp = task_to_page(task)
            if lp is not None:
                rec = page_record(lp, receipt_id=f"labelstudio-{task.get('id')}")
                rec["review"] = {"by": "labelstudio", "at": at, "changed_words": None}
                out.append(rec)
                report.foreign += 1
                report.imported.append(rec["receipt_id"])
            continue
        record = records.get(rid)
        if record is None:
            report.unknown_receipts.append(rid)
            continue
        labels = reviewed_labels(task, len(record["page"]["words"]), ann, report)
        out.append(labelled_record(record, labels, reviewed_by="labelstudio", reviewed_at=at))
        report.imported.append(rid)
    return out, report


def read_export(path: str | Path) -> list[dict[str, Any]]:
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, list):
        raise ValueError(f"{path}: a Label Studio JSON export is a list of tasks")
    return doc
