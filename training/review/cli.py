"""`socratext review collect | export | import | correct | label-config`: the review half of the learning
loop from the command line (mounted on the main CLI by `register(app)`). The functions under the
commands are what the tests call, so they exercise the commands' code paths.

    socratext review collect --once                    # receipts.review → datasets/review/<id>.json
    socratext review export tasks.json                 # → Label Studio tasks, predictions pre-filled
    socratext review label-config > config.xml         # the matching labelling interface
    socratext review import export.json                # reviewed export → datasets/reviewed/<id>.json
    socratext review correct fixes.json                # or: corrected field values → the same
    python -m training.train --init-from registry:<name> --reviewed s3 --held-out DIR --s3
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import typer

from socratext.settings import Settings, get_settings
from training.review.records import iter_records, write_records

review_app = typer.Typer(help="Review low-confidence receipts and turn the corrections into training data.",
                         no_args_is_help=True)


def _store(settings: Settings) -> Any:
    from socratext.storage import ObjectStore

    return ObjectStore(settings)


def review_records(settings: Settings, ids: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """The collected review records ({receipt_id: record}), all or only `ids`."""
    store = _store(settings)
    if ids is not None:
        from training.review.records import record_key

        return {rid: json.loads(store.get_bytes(settings.s3_bucket,
                                                record_key(settings.review_dataset_prefix, rid)))
                for rid in ids}
    return {r["receipt_id"]: r for r in iter_records(settings.review_dataset_prefix, store=store)}


def save_reviewed(settings: Settings, records: list[dict[str, Any]], dest: str = "s3") -> int:
    """Labelled records → `reviewed_dataset_prefix` in the bucket (`dest="s3"`) or a local directory."""
    if dest == "s3":
        return write_records(records, settings.reviewed_dataset_prefix, store=_store(settings))
    return write_records(records, Path(dest))


def apply_corrections(settings: Settings, corrections: dict[str, dict[str, Any]], dest: str = "s3",
                      ) -> tuple[int, dict[str, list[str]]]:
    """Corrected field values → labelled records saved to `dest`; returns (saved, {id: unmatched fields})
    — receipts whose corrections do not all match their words are not saved."""
    from training.review.corrections import correct
    from training.review.records import labelled_record

    records = review_records(settings, corrections)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out, failed = [], {}
    for rid, fields in corrections.items():
        c = correct(records[rid], fields)
        if c.labels is None:
            failed[rid] = c.unmatched
            continue
        out.append(labelled_record(records[rid], c.labels, reviewed_by="corrections", reviewed_at=now,
                                   fields=fields))
    return save_reviewed(settings, out, dest), failed


@review_app.command("collect")
def collect_cmd(
    once: bool = typer.Option(False, "--once", help="Exit once the topic is drained."),
    timeout: float = typer.Option(None, help="Exit after S seconds."),
    group: str = typer.Option(None, help="Consumer group (default settings.review_group)."),
) -> None:
    """Store every receipt of receipts.review as a review record (idempotent by receipt id)."""
    from training.review.collect import collect

    stats = collect(get_settings(), group=group, once=once, timeout_s=timeout)
    typer.echo(stats.summary(), err=True)


@review_app.command("export")
def export_cmd(
    out: Path = typer.Argument(..., help="Label Studio tasks JSON to write."),
    ids: list[str] = typer.Option(None, "--id", help="Only these receipt ids (repeatable)."),
) -> None:
    """Review records → Label Studio tasks with the model's predictions pre-filled."""
    from training.review.labelstudio import export_tasks

    tasks = export_tasks(review_records(get_settings(), ids or None).values())
    out.write_text(json.dumps(tasks, ensure_ascii=False, indent=1), encoding="utf-8")
    typer.echo(f"{len(tasks)} tasks → {out}", err=True)


@review_app.command("label-config")
def label_config_cmd() -> None:
    """Print the Label Studio labelling interface (XML) the exported tasks need."""
    from training.review.labelstudio import label_config

    typer.echo(label_config(), nl=False)


@review_app.command("import")
def import_cmd(
    export: Path = typer.Argument(..., exists=True, dir_okay=False, help="Label Studio JSON export."),
    to: str = typer.Option("s3", "--to", help="'s3' (settings.reviewed_dataset_prefix) or a directory."),
) -> None:
    """A reviewed Label Studio export → labelled records (training data)."""
    from training.review.labelstudio import import_export, read_export

    settings = get_settings()
    tasks = read_export(export)
    ids = [t.get("data", {}).get("receipt_id") for t in tasks]
    records = review_records(settings, [i for i in ids if i]) if any(ids) else {}
    labelled, report = import_export(tasks, records)
    n = save_reviewed(settings, labelled, to)
    typer.echo(f"{report.summary()}; {n} records saved", err=True)


@review_app.command("correct")
def correct_cmd(
    corrections: Path = typer.Argument(..., exists=True, dir_okay=False,
                                       help='JSON {"<receipt_id>": {"total": "23.40", ...}}.'),
    to: str = typer.Option("s3", "--to", help="'s3' (settings.reviewed_dataset_prefix) or a directory."),
) -> None:
    """Corrected field values → word labels on the review records → labelled records (training data)."""
    from training.review.corrections import load_corrections

    n, failed = apply_corrections(get_settings(), load_corrections(corrections), to)
    for rid, fields in failed.items():
        typer.echo(f"{rid}: no words match the corrected {', '.join(fields)}; not saved", err=True)
    typer.echo(f"{n} reviewed records saved", err=True)
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(review_app, name="review")


def main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover
    review_app(argv)
