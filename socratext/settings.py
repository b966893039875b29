"""One typed settings object, read from the environment (`SOCRATEXT_*`), defaulting to the local stack.

Every adapter (OCR, model, S3, Kafka, worker) takes its configuration from here, so a deployment
changes behaviour through environment variables only (Kubernetes ConfigMap/Secret, compose file).
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SOCRATEXT_", extra="ignore")

    # --- input limits (bad input must fail fast and clearly) ---
    max_file_bytes: int = 30 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_pdf_pages: int = 20

    # --- OCR ---
    ocr_languages: str = "fra+eng"
    ocr_max_side: int = 1800
    ocr_deskew: bool = True
    ocr_second_pass: bool = True  # re-read a sharpened copy when the date or total line was not read
    # The engine of that second pass: "" = the same engine on a sharpened copy; "ppocr" (with a Tesseract
    # ocr_backend) = PP-OCR on the image itself, i.e. Tesseract first and the deep OCR only for the
    # receipts whose date or total line Tesseract could not read.
    ocr_second_pass_backend: Literal["", "tesserocr", "pytesseract", "ppocr"] = ""
    # "ppocr" (the default): PP-OCRv6 detection + recognition (deep networks whose weights ship in the
    # rapidocr wheel, `socratext[ppocr]`) through onnxruntime, words regrouped into rows from their boxes
    # (socratext/ocr/ppocr_backend.py). It reads real receipts far better than Tesseract (held-out SROIE
    # end-to-end micro F1 0.88 vs 0.63) for about 5x its CPU per receipt (docs/accuracy.md).
    # "tesserocr": Tesseract's C++ API in-process, models loaded once per engine; "pytesseract": one
    # `tesseract` program run per image. When the tesserocr package or tessdata is missing, "tesserocr"
    # falls back to "pytesseract" with a warning. With a Tesseract backend, ocr_second_pass_backend="ppocr"
    # is the budget policy (about 2x Tesseract's CPU, F1 0.70).
    ocr_backend: Literal["tesserocr", "pytesseract", "ppocr"] = "ppocr"
    # onnxruntime intra-op threads per PP-OCR engine: a worker already reads one receipt per core
    # (ocr_concurrency), so one thread each keeps the cores from being oversubscribed.
    ocr_intra_op_threads: int = 1
    # Long side of the image PP-OCR reads (never enlarged: its detector resizes by itself).
    ppocr_max_side: int = 1800
    # Extra Tesseract variables for both backends. Tesseract 5 re-reads every line it is unsure of as
    # white-on-black text; receipts print none, and skipping it took 7 % off the OCR CPU time on 20 SROIE
    # receipts with the same words (bench/bench_ocr_backends.py, variant tesserocr-noinvert). Set "" to
    # read inverted banners again.
    ocr_tesseract_config: str = "-c tessedit_do_invert=0"

    # --- extraction ---
    # "default": the bundled layout model combined with the rules — it beats the rules alone end to end on
    # held-out SROIE and synthetic receipts (socratext/default_model/model_card.md); "rules": the rules
    # extractor alone (no model to load); or a model directory / hub id.
    model: str = "default"
    # The model registry (socratext/registry.py): `model` may also be "registry:<name>" (follow the
    # version `current.json` names; workers re-check it every model_poll_s seconds between batches) or
    # "registry:<name>@<version>" (pinned). Empty bucket = s3_bucket. model_poll_s <= 0: no live upgrade
    # (the current version is read once, at start).
    model_registry_bucket: str = ""
    model_poll_s: float = 15.0
    review_threshold: float = 0.75
    device: str = "auto"
    # Reviewed merchant names and addresses (socratext/fields/known.py, built by `python -m
    # training.known_values`): a local JSON file or "s3://bucket/key"; empty = none. Misread names and
    # addresses close to one of them are corrected at assembly; workers re-read it every model_poll_s.
    known_values: str = ""

    # --- local stack / object store / broker ---
    state_dir: Path = REPO_ROOT / ".state"
    kafka_bootstrap: str = "localhost:19092"
    s3_endpoint: str = "http://127.0.0.1:19000"
    s3_access_key: str = "socratext"
    s3_secret_key: SecretStr = SecretStr("socratext-secret")
    s3_region: str = "us-east-1"
    s3_bucket: str = "receipts"
    s3_allowed_buckets: str = "receipts"
    topic_uploaded: str = "receipts.uploaded"
    topic_ocr: str = "receipts.ocr"
    topic_extracted: str = "receipts.extracted"
    topic_review: str = "receipts.review"
    topic_deadletter: str = "receipts.deadletter"
    batch_size: int = 8
    batch_window_s: float = 0.5
    metrics_port: int = 9464
    worker_threads: int = 0  # 0 = min(4, CPU count)
    # Attach a 224x224 JPEG of each page to its OCR event (5-15 KB), for extract-stage models that look at
    # pixels (LayoutLMv2's visual backbone); without it they see a blank sheet.
    ocr_event_page_image: bool = True
    # Run the rules extractor in the OCR stage and carry its word labels in the OCR event (`rule_labels`):
    # the extraction stage, whose host time bounds a GPU worker, then does not run them again (they were
    # 1.6 of its 3.6 ms per receipt with the default model; 1.5 ms next to the OCR's ~450 ms here).
    ocr_event_rule_labels: bool = True
    ocr_concurrency: int = 0  # receipts OCR'd at once per worker; 0 = one per core (1.9x on 2 cores)
    # Micro-batches extracted at once per worker (agent instances sharing the model): with 2, one batch's
    # Python work overlaps the other's model pass, which runs without the GIL. One process's extraction
    # stage on 2 CPU cores, 2 vs 1 (bench.bench_gpu --threads, bench/results/stage_threads_cpu*.json):
    # 1.03-1.07x for the default model with torch's threads on both cores, 1.4x with one intra-op thread
    # (a GPU worker's setting: there the overlap is host work against the GPU's). Each adds one batch of
    # memory; 1 = one batch after the other.
    extract_concurrency: int = 2
    # exactly_once: each batch's outputs and its input offsets are written in one Kafka transaction, so a
    # read_committed consumer sees every receipt once whatever kills a worker (streams/delivery.py);
    # at_least_once: outputs first, offsets after; a crash in between re-publishes (consumers dedup by key).
    delivery: Literal["exactly_once", "at_least_once"] = "exactly_once"
    # A transaction left open by a killed worker holds back read_committed consumers of its output
    # partitions until the partition's next owner starts (at once) or this timeout aborts it.
    kafka_transaction_timeout_s: float = 60.0
    # Fault injection for the kill tests (tests/test_faults.py), never set in production: the first
    # transaction of the worker stops at this point (flushed, logging "fault pause at <point>") and
    # waits there `fault_pause_s` (until the process is killed, by default).
    fault_pause_at: Literal["", "before_send", "between_sends", "before_commit"] = ""
    fault_pause_s: float = 3600.0  # how long it stays there (a zombie test resumes it after a rebalance)
    commit_every: int = 10  # at_least_once: Faust commits after this many acknowledged events ...
    commit_interval_s: float = 1.0  # ... or this often
    kafka_session_timeout_s: float = 10.0
    # Kafka security (socratext/kafka_config.py maps these onto kafka-python, aiokafka and Faust):
    # PLAINTEXT (the local stack), SSL (TLS), SASL_PLAINTEXT or SASL_SSL (SASL over TLS: production).
    # Secrets are SecretStr: they never show in repr, logs or events (tests/test_kafka_config.py).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: str = ""  # CA bundle that signed the brokers' certificates; empty = system CAs
    kafka_ssl_certfile: str = ""  # client certificate (mutual TLS), PEM
    kafka_ssl_keyfile: str = ""  # its private key, PEM
    kafka_ssl_key_password: SecretStr = SecretStr("")
    kafka_ssl_check_hostname: bool = True
    # Object store down (storage_unavailable): a fetch is tried s3_retry_attempts times in all, pausing
    # between tries a random time in [base, min(max, base * 2**(n+1))] (socratext/retry.py), then the
    # receipt is dead-lettered (replayable). Any outage shorter than (attempts - 1) * base is ridden out.
    s3_retry_attempts: int = 6
    s3_retry_base_s: float = 1.0
    s3_retry_max_s: float = 8.0

    # --- learning loop (training/review): where review records and reviewed training data live ---
    review_dataset_prefix: str = "datasets/review/"  # one record per low-confidence receipt (collector)
    reviewed_dataset_prefix: str = "datasets/reviewed/"  # reviewed labelled pages = training data
    review_group: str = "socratext-review-collector"  # the collector's Kafka consumer group


OTHER_VARIABLES: dict[str, str] = {
    "SOCRATEXT_OPT": "where deploy/local/install.sh puts Kafka and MinIO (socratext/stack.py)",
    "SOCRATEXT_CACHE": "training and evaluation caches (training/datasets/common.py)",
    "SOCRATEXT_WORKER_STAGE": "the stage of `faust -A streams.app worker` (streams/app.py)",
    "SOCRATEXT_MODEL_URI": "the model the Kubernetes init step fetches (deploy/k8s)",
    "SOCRATEXT_GO": "the Go binary deploy/local/install.sh builds MinIO with",
    "SOCRATEXT_GPU_BATCH_SIZE": "the GPU worker's batch size in deploy/compose",
    "SOCRATEXT_REQUIRE_STACK": "tests: a missing local stack fails instead of skipping (.ci/run)",
    "SOCRATEXT_TEST_STATE_DIR": "tests: the state dir of the session's stack",
    "SOCRATEXT_E2E_WAIT_S": "tests: how long the end-to-end tests wait for events",
}
"""`SOCRATEXT_*` variables that are not settings of the service, and who reads them."""


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """`SOCRATEXT_*` names in `environ` that nothing reads — a misspelt setting is otherwise ignored
    in silence — each with the closest known name (None when nothing is close)."""
    prefix = "SOCRATEXT_"
    known = {prefix + name.upper() for name in Settings.model_fields} | set(OTHER_VARIABLES)
    return [(name, next(iter(difflib.get_close_matches(name, known, n=1, cutoff=0.8)), None))
            for name in sorted(environ) if name.startswith(prefix) and name not in known]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests build their own `Settings(...)` instead of touching this.

    Every process's entry points (worker, CLI) read them here, so this is where an unknown
    `SOCRATEXT_*` variable is reported: a warning, not an error (a newer deployment's variable must
    not stop an older worker)."""
    for name, close in unknown_variables(os.environ):
        logging.getLogger("socratext").warning(
            "unknown environment variable %s ignored%s; the settings are in socratext/settings.py", name,
            f" (did you mean {close}?)" if close else "")
    return Settings()
