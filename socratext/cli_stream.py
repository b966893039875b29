"""`socratext upload | tail | worker | demo`: the streaming service from the command line.

Mounted on the main CLI with `register(app)`. Uses kafka-python (a plain blocking client) for the
one-shot commands; only `worker` runs Faust. The helpers (`upload_files`, `consume`) are also what the
end-to-end tests use, so the tests exercise the commands' code paths.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from socratext.privacy import install_log_redaction
from socratext.settings import Settings, get_settings

err = Console(stderr=True)
DEFAULT_PREFIX = "uploads/"
"""Where `upload` puts files: outside the bucket-notification prefix (`socratext.stack.UPLOAD_PREFIX`,
"incoming/"), because `upload` announces the file itself; a file under "incoming/" is announced by MinIO."""
SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".pdf")


def make_producer(settings: Settings) -> Any:
    from kafka import KafkaProducer

    from socratext.kafka_config import kafka_python_kwargs

    return KafkaProducer(**kafka_python_kwargs(settings, acks="all", linger_ms=5))


def resolve_topic(settings: Settings, topic: str) -> str:
    """A logical name ("extracted", "review", ...) or a Kafka topic name."""
    from socratext.topics import TOPICS

    return TOPICS[topic].name(settings) if topic in TOPICS else topic


def upload_files(settings: Settings, files: list[tuple[str, bytes]], bucket: str | None = None,
                 prefix: str = DEFAULT_PREFIX, producer: Any = None, announce: bool | None = None,
                 ) -> list[dict[str, str]]:
    """Put each `(name, data)` into the bucket and publish our upload event v1 for it.

    The object is named by its content, so the original file name (`name`'s last part) goes with it: in
    the event's `filename` and the object's metadata (`x-amz-meta-filename`, URL-encoded), which MinIO's
    notification carries for files put under the notification prefix. The extracted event's `source`
    repeats it.

    The receipt id is the content hash (as in `socratext extract`), so uploading a file twice gives the
    same id and downstream dedups it. Under the notification prefix we do not publish: MinIO's own
    notification announces the object, with the id `streams.events.s3_receipt_id(bucket, key, etag)`
    (the ETag of a single-part upload is the MD5 of the content).
    """
    from urllib.parse import quote

    from socratext.errors import SocratextError
    from socratext.pipeline import receipt_id_for
    from socratext.stack import UPLOAD_PREFIX
    from socratext.storage import ObjectStore
    from socratext.topics import SCHEMA_VERSION
    from streams.events import FILENAME_METADATA, check_filename, dumps, now_iso, s3_receipt_id

    bucket = bucket or settings.s3_bucket
    announce = (not prefix.startswith(UPLOAD_PREFIX)) if announce is None else announce
    store = ObjectStore(settings)
    own_producer = producer is None and announce
    producer = make_producer(settings) if own_producer else producer
    out = []
    try:
        for name, data in files:
            rid = receipt_id_for(data)
            key = f"{prefix}{rid}{Path(name).suffix.lower()}"
            ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
            try:
                filename = check_filename(Path(name).name[-255:] or None)
            except SocratextError:  # control characters in a local name: not passed on downstream
                filename = None
            meta = {FILENAME_METADATA: quote(filename, safe="")} if filename else None
            store.put_bytes(bucket, key, data, ctype, metadata=meta)
            if announce:
                event = {"schema_version": SCHEMA_VERSION, "receipt_id": rid, "bucket": bucket, "key": key,
                         "uploaded_at": now_iso(), "content_type": ctype}
                if filename:
                    event["filename"] = filename
                producer.send(settings.topic_uploaded, key=rid.encode(), value=dumps(event))
            else:
                rid = s3_receipt_id(bucket, key, hashlib.md5(data).hexdigest())
            out.append({"receipt_id": rid, "bucket": bucket, "key": key, "file": name})
        if producer is not None:
            producer.flush(timeout=30)
    finally:
        if own_producer:
            producer.close(timeout=10)
    return out


def consume(settings: Settings, topics: list[str], from_beginning: bool = False, timeout: float | None = None,
            ) -> Iterator[tuple[str, dict[str, Any] | bytes]]:
    """Yield `(topic, value)` from the given Kafka topics, without a consumer group (reading commits
    nothing and disturbs no worker). Positions are fixed before the first yield, so a caller can start
    this, then produce, and not miss anything. Values that are not JSON are yielded as bytes."""
    from kafka import KafkaConsumer, TopicPartition

    from socratext.kafka_config import kafka_python_kwargs

    # read_committed: the outputs of a transaction a killed worker left open or aborted are never shown
    consumer = KafkaConsumer(**kafka_python_kwargs(settings, group_id=None, enable_auto_commit=False,
                                                   consumer_timeout_ms=500, isolation_level="read_committed"))
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])]
        if not tps:
            raise typer.BadParameter(f"no such topic(s): {', '.join(topics)}")
        consumer.assign(tps)
        (consumer.seek_to_beginning if from_beginning else consumer.seek_to_end)(*tps)
        for tp in tps:
            consumer.position(tp)  # resolve now, not lazily at the first poll
        deadline = None if timeout is None else time.monotonic() + timeout
        yield "", b""  # positions are fixed: the caller may now produce
        while deadline is None or time.monotonic() < deadline:
            for msg in consumer:  # stops after consumer_timeout_ms without messages
                try:
                    value: dict[str, Any] | bytes = json.loads(msg.value)
                except ValueError:
                    value = msg.value
                yield msg.topic, value
                if deadline is not None and time.monotonic() >= deadline:
                    return
    finally:
        consumer.close()


def started(it: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """Run `consume()` up to its positioning marker, then hand it back."""
    next(it)
    return it


def upload_cmd(
    files: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="Receipt images or PDFs."),
    bucket: str = typer.Option(None, help="Target bucket (default settings.s3_bucket)."),
    prefix: str = typer.Option(DEFAULT_PREFIX, help="Key prefix (under 'incoming/' MinIO announces it)."),
) -> None:
    """Upload receipts to the object store and announce them on receipts.uploaded; prints the receipt ids."""
    settings = get_settings()
    install_log_redaction(settings)
    for row in upload_files(settings, [(str(f), f.read_bytes()) for f in files], bucket, prefix):
        typer.echo(row["receipt_id"])
        err.print(f"{row['file']} → s3://{row['bucket']}/{row['key']}", highlight=False)


def tail_cmd(
    topic: str = typer.Option("extracted", help="uploaded|ocr|extracted|review|deadletter or a name."),
    count: int = typer.Option(None, "--count", "-n", min=1, help="Stop after N events."),
    timeout: float = typer.Option(None, help="Stop after S seconds."),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Start at the oldest event."),
) -> None:
    """Print the events of a topic as JSON Lines on stdout (new ones only, unless --from-beginning)."""
    settings = get_settings()
    install_log_redaction(settings)
    n = 0
    for _, value in started(consume(settings, [resolve_topic(settings, topic)], from_beginning, timeout)):
        line = json.dumps(value, ensure_ascii=False) if not isinstance(value, bytes) else json.dumps(
            {"raw": value.decode("utf-8", "replace")})
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        n += 1
        if count is not None and n >= count:
            break


def worker_cmd(
    stage: str = typer.Option("all", help="ocr, extract, or all (both agents in one process)."),
    loglevel: str = typer.Option("info"),
    metrics_port: int = typer.Option(None, help="Default settings.metrics_port; 0 any free, -1 none."),
) -> None:
    """Run a streaming worker (Faust) until stopped with Ctrl-C / SIGTERM."""
    from streams import STAGES

    if stage not in STAGES:
        raise typer.BadParameter("stage must be ocr, extract or all")
    from streams.worker import run

    run(stage, loglevel, metrics_port)


def start_worker(settings: Settings, log_path: Path, stage: str = "all", env: dict[str, str] | None = None,
                 ) -> subprocess.Popen:
    """`python -m streams.worker` as a child process (its own process group), logging to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "SOCRATEXT_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
                "SOCRATEXT_S3_ENDPOINT": settings.s3_endpoint, **(env or {})}
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "streams.worker", "--stage", stage], env=full_env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=Path(__file__).resolve().parent.parent)


def stop_worker(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    """SIGTERM (graceful: current batch finishes and is committed), SIGKILL after `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def _summary_table(events: list[dict[str, Any]]) -> Table:
    table = Table(title="receipts.extracted")
    for col in ("file", "merchant", "date", "total", "currency", "items", "confidence", "review"):
        table.add_column(col)
    for e in events:
        f = e.get("fields", {})
        table.add_row(e.get("_file", e["receipt_id"]), f.get("merchant_name", {}).get("value", "-"),
                      f.get("date", {}).get("value", "-"), f.get("total", {}).get("value", "-"),
                      f.get("currency", {}).get("value", "-"), str(len(e.get("items", []))),
                      f"{e.get('confidence', 0):.2f}", "yes" if e.get("needs_review") else "no")
    return table


def demo_cmd(
    images: Path = typer.Option(None, "--images", file_okay=False, exists=True,
                                help="Directory of receipt images (default: the bundled samples)."),
    timeout: float = typer.Option(300.0, help="Seconds to wait for all results."),
    down: bool = typer.Option(False, "--down", help="Stop the stack afterwards."),
    as_json: bool = typer.Option(False, "--json", help="Print the extracted events as JSON."),
) -> None:
    """Start the stack and a worker, upload sample receipts, show the extracted fields as they arrive."""
    from socratext import stack

    settings = get_settings()
    install_log_redaction(settings)
    src = images or SAMPLES_DIR
    files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if src.exists() else []
    if not files:
        raise typer.BadParameter(f"no receipt images in {src}")
    with err.status("starting Kafka and MinIO..."):
        stack.up(settings)
    log_path = Path(settings.state_dir) / "demo-worker.log"
    proc = start_worker(settings, log_path)
    err.print(f"worker pid {proc.pid}, log {log_path}")
    try:
        topics = [settings.topic_extracted, settings.topic_deadletter]
        it = started(consume(settings, topics, timeout=timeout))
        t0 = time.monotonic()
        rows = upload_files(settings, [(p.name, p.read_bytes()) for p in files])
        want = {r["receipt_id"]: r["file"] for r in rows}
        got: list[dict[str, Any]] = []
        with err.status(f"waiting for {len(want)} receipts (OCR + extraction)..."):
            for topic, value in it:
                if not isinstance(value, dict) or value.get("receipt_id") not in want:
                    continue
                if topic == settings.topic_deadletter:
                    name = want.pop(value["receipt_id"])
                    err.print(f"[red]failed[/red] {name}: {value['code']}: {value['message']}")
                    continue
                value["_file"] = want.pop(value["receipt_id"])
                got.append(value)
                err.print(f"extracted {value['_file']} (confidence {value['confidence']:.2f})")
                if as_json:
                    sys.stdout.write(json.dumps({k: v for k, v in value.items() if k != "_file"},
                                                ensure_ascii=False, indent=2) + "\n")
                if not want:
                    break
        err.print(f"{len(got)} receipt(s) extracted in {time.monotonic() - t0:.1f} s")
        if not as_json:
            out = Console()
            (out if out.is_terminal else Console(width=140)).print(_summary_table(got))
        if want:
            err.print(f"[red]timed out waiting for {len(want)} receipts[/red]; see {log_path}")
            raise typer.Exit(1)
    finally:
        stop_worker(proc)
        if down:
            stack.down(settings)


def register(app: typer.Typer) -> None:
    """Mount the streaming commands on the main `socratext` CLI."""
    app.command("upload")(upload_cmd)
    app.command("tail")(tail_cmd)
    app.command("worker")(worker_cmd)
    app.command("demo")(demo_cmd)
