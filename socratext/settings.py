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

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every setting of the service, each with its environment variable `SOCRATEXT_<NAME>`, its default,
    bounds that reject a nonsense value at start-up (not at the first receipt) and a description;
    `socratext settings` prints them with the values in force."""

    model_config = SettingsConfigDict(env_prefix="SOCRATEXT_", extra="ignore")

    # --- input limits (bad input must fail fast and clearly) ---
    max_file_bytes: int = Field(30 * 1024 * 1024, gt=0, description=(
        "Largest receipt file read, in bytes; a bigger one is refused (from the object store, before "
        "it is downloaded)."))
    max_image_pixels: int = Field(40_000_000, gt=0, description=(
        "Largest image decoded, in pixels: a decompression bomb is refused before it fills the memory."))
    max_pdf_pages: int = Field(20, ge=1, description=(
        "Most pages (or frames) a receipt file may have; one with more is refused."))

    # --- OCR ---
    ocr_languages: str = Field("fra+eng", min_length=1, description=(
        "Tesseract's language models, '+'-joined (French first, English for foreign receipts)."))
    ocr_max_side: int = Field(1800, ge=0, description="Long side, in pixels, of the image Tesseract reads.")
    ocr_deskew: bool = Field(True, description="Straighten a skewed scan before Tesseract reads it.")
    ocr_second_pass: bool = Field(True, description=(
        "Read a sharpened copy again when the date or the total line was not read."))
    ocr_second_pass_backend: Literal["", "tesserocr", "pytesseract", "ppocr"] = Field("", description=(
        "The engine of that second pass: empty = the same engine on a sharpened copy; 'ppocr' with a "
        "Tesseract ocr_backend = Tesseract first, PP-OCR only for the receipts whose date or total line "
        "Tesseract could not read (the budget policy, docs/accuracy.md)."))
    ocr_backend: Literal["tesserocr", "pytesseract", "ppocr"] = Field("ppocr", description=(
        "'ppocr': PP-OCR detection + recognition (weights in the rapidocr wheel, `socratext[ppocr]`) on "
        "onnxruntime, words regrouped into rows from their boxes; it reads real receipts far better than "
        "Tesseract for more CPU (docs/accuracy.md). 'tesserocr': Tesseract's C++ API in-process (falls back "
        "to 'pytesseract', with a warning, when the package or tessdata is missing); 'pytesseract': one "
        "`tesseract` program run per image."))
    ocr_intra_op_threads: int = Field(1, ge=1, description=(
        "onnxruntime threads per PP-OCR engine: a worker already reads one receipt per core "
        "(ocr_concurrency), so more would oversubscribe the cores."))
    ppocr_max_side: int = Field(1800, ge=32, description=(
        "Long side of the image PP-OCR reads (never enlarged: its detector resizes by itself)."))
    ppocr_detector: Literal["int8", "float"] = Field("int8", description=(
        "PP-OCR's text detector on the CPU: 'int8' = the wheel's network quantised to 8-bit integers "
        "(built once into ppocr_model_cache; about 3x faster, the same words on SROIE, docs/accuracy.md), "
        "'float' = the wheel's network as is. A GPU always runs the float one."))
    ppocr_det_min_side: int = Field(480, ge=32, description=(
        "The detector enlarges a page whose short side is below this (rapidocr's own 736 enlarged SROIE's "
        "460 px scans 1.6x for no more words)."))
    ppocr_rec_batch: int = Field(0, ge=0, description=(
        "Text lines per recognition call: 0 = 1 on the CPU (no padding to the widest line, which only costs "
        "there), 6 on a GPU (rapidocr's default)."))
    ppocr_rec_min_width: int = Field(320, ge=16, le=960, description=(
        "Narrowest input of the recogniser, in pixels at its 48 px height: a shorter text line is padded "
        "to it, as the network saw in training. Less pads less and reads faster (192: about a fifth less "
        "OCR CPU) but misreads a few more short lines (SROIE training split: 3 fields in 820 fewer right)."))
    ppocr_model_cache: Path = Field(Path("~/.cache/socratext/ppocr"), description=(
        "Where the int8 PP-OCR detector is built and kept (`socratext ocr-models` builds it ahead)."))
    ocr_tesseract_config: str = Field("-c tessedit_do_invert=0", description=(
        "Extra Tesseract variables. The default skips Tesseract 5's re-reading of unsure lines as "
        "white-on-black text, which receipts do not print; set it empty to read inverted banners."))

    # --- extraction ---
    model: str = Field("default", min_length=1, description=(
        "'default': the bundled layout model combined with the rules (socratext/default_model); 'rules': "
        "the rules alone (no model to load); a model directory or hub id; 'registry:<name>' (follow the "
        "version the registry's current.json names, live) or 'registry:<name>@<version>' (pinned); or a "
        "plugin 'package.module:Name'."))
    model_registry_bucket: str = Field("", description="Bucket of the model registry; empty = s3_bucket.")
    model_poll_s: float = Field(15.0, description=(
        "How often a worker re-reads the registry's current version and the known values, in seconds; "
        "<= 0: read once at start (no live upgrade)."))
    review_threshold: float = Field(0.75, ge=0.0, description=(
        "A receipt whose confidence is below this also goes to the review topic; above 1 sends them all."))
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description=(
        "Where the model and PP-OCR run: 'auto' (CUDA when there is one), 'cpu', 'cuda', 'cuda:N'. Asking "
        "for CUDA where it cannot run is logged and counted, never silent."))
    known_values: str = Field("", description=(
        "Reviewed merchant names and addresses (built by `python -m training.known_values`): a local JSON "
        "file or 's3://bucket/key'; empty = none. Misread names and addresses close to one of them are "
        "corrected at assembly; workers re-read it every model_poll_s."))

    # --- local stack / object store / broker ---
    state_dir: Path = Field(REPO_ROOT / ".state", description=(
        "Where the local stack keeps its data, logs and pids (`socratext stack`)."))
    kafka_bootstrap: str = Field("localhost:19092", min_length=1, description=(
        "Kafka brokers, host:port[,...]."))
    s3_endpoint: str = Field("http://127.0.0.1:19000", description="The object store's S3 endpoint URL.")
    s3_access_key: str = Field("socratext", description="S3 access key.")
    s3_secret_key: SecretStr = Field(SecretStr("socratext-secret"), description=(
        "S3 secret key (never logged)."))
    s3_region: str = Field("us-east-1", description="S3 region.")
    s3_bucket: str = Field("receipts", min_length=1, description="Bucket uploads go to.")
    s3_allowed_buckets: str = Field("receipts", description=(
        "Comma-separated buckets an event may name; any other is refused (an event must not make a worker "
        "read arbitrary objects)."))
    topic_uploaded: str = Field("receipts.uploaded", min_length=1, description=(
        "Input: receipt uploaded events."))
    topic_ocr: str = Field("receipts.ocr", min_length=1, description="Between the stages: OCR'd pages.")
    topic_extracted: str = Field("receipts.extracted", min_length=1, description=(
        "Output: extracted receipts."))
    topic_review: str = Field("receipts.review", min_length=1, description=(
        "Low-confidence receipts, to review."))
    topic_deadletter: str = Field("receipts.deadletter", min_length=1, description=(
        "Inputs that could not be processed, with a stable error code (replayable)."))
    batch_size: int = Field(8, ge=1, description="Events per extraction micro-batch (one model call).")
    batch_window_s: float = Field(0.5, ge=0.0, description=(
        "How long a micro-batch waits to fill before it runs with what it has, in seconds."))
    metrics_port: int = Field(9464, ge=-1, le=65535, description=(
        "Port of the worker's Prometheus metrics and /healthz; 0 = any free port, -1 = none."))
    worker_threads: int = Field(0, ge=0, description="The worker's thread pool; 0 = min(4, CPU count).")
    ocr_event_page_image: bool = Field(True, description=(
        "Attach a 224x224 JPEG of each page to its OCR event (5-15 KB) for models that look at pixels "
        "(LayoutLMv2's visual backbone); without it they see a blank sheet."))
    ocr_event_rule_labels: bool = Field(True, description=(
        "Run the rules in the OCR stage and carry their word labels in the OCR event, so the extraction "
        "stage, whose host time bounds a GPU worker, does not run them again."))
    ocr_concurrency: int = Field(0, ge=0, description="Receipts OCR'd at once per worker; 0 = one per core.")
    extract_concurrency: int = Field(2, ge=1, description=(
        "Micro-batches extracted at once per worker, sharing the model: with 2, one batch's Python work "
        "overlaps the other's model pass, which runs without the GIL. Each adds one batch of memory."))
    delivery: Literal["exactly_once", "at_least_once"] = Field("exactly_once", description=(
        "exactly_once: each batch's outputs and its input offsets are written in one Kafka transaction, so "
        "a read_committed consumer sees every receipt once whatever kills a worker (streams/delivery.py); "
        "at_least_once: outputs first, offsets after; a crash in between publishes again (consumers "
        "dedup by key)."))
    kafka_transaction_timeout_s: float = Field(60.0, gt=0.0, description=(
        "A transaction left open by a killed worker holds back read_committed consumers of its output "
        "partitions until the partition's next owner starts (at once) or this timeout aborts it."))
    fault_pause_at: Literal["", "before_send", "between_sends", "before_commit"] = Field("", description=(
        "Fault injection for the kill tests (tests/test_faults.py), never set in production: the worker's "
        "first transaction stops at this point and waits there fault_pause_s."))
    fault_pause_s: float = Field(3600.0, ge=0.0, description=(
        "How long it waits at fault_pause_at, in seconds."))
    commit_every: int = Field(10, ge=1, description=(
        "at_least_once: Faust commits after this many acknowledged events ..."))
    commit_interval_s: float = Field(1.0, gt=0.0, description="... or this often, in seconds.")
    kafka_session_timeout_s: float = Field(10.0, gt=0.0, description=(
        "How long a silent worker keeps its partitions before the group gives them to another, in seconds."))
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description=(
            "PLAINTEXT (the local stack), SSL (TLS), SASL_PLAINTEXT or SASL_SSL (SASL over TLS: production); "
            "socratext/kafka_config.py maps it onto kafka-python, aiokafka and Faust."))
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism, with a SASL_* protocol.")
    kafka_sasl_username: str = Field("", description="SASL user name.")
    kafka_sasl_password: SecretStr = Field(SecretStr(""), description="SASL password (never logged).")
    kafka_ssl_cafile: str = Field("", description=(
        "CA bundle that signed the brokers' certificates, PEM; empty = the system's CAs."))
    kafka_ssl_certfile: str = Field("", description="Client certificate for mutual TLS, PEM.")
    kafka_ssl_keyfile: str = Field("", description="Its private key, PEM.")
    kafka_ssl_key_password: SecretStr = Field(SecretStr(""), description="The private key's password.")
    kafka_ssl_check_hostname: bool = Field(True, description="Check that a broker's certificate names it.")
    s3_retry_attempts: int = Field(6, ge=1, description=(
        "Object store down: a fetch is tried this many times in all, pausing between tries a random time "
        "in [base, min(max, base * 2**(n+1))] (socratext/retry.py), then the receipt is dead-lettered "
        "(replayable). An outage shorter than (attempts - 1) * base is ridden out."))
    s3_retry_base_s: float = Field(1.0, ge=0.0, description=(
        "The shortest pause between two tries, in seconds."))
    s3_retry_max_s: float = Field(8.0, ge=0.0, description="The longest pause between two tries, in seconds.")

    # --- learning loop (training/review): where review records and reviewed training data live ---
    review_dataset_prefix: str = Field("datasets/review/", description=(
        "Where the review collector writes one record per low-confidence receipt."))
    reviewed_dataset_prefix: str = Field("datasets/reviewed/", description=(
        "Where reviewed labelled pages (training data) are read from."))
    review_group: str = Field("socratext-review-collector", min_length=1, description=(
        "The review collector's Kafka consumer group."))


OTHER_VARIABLES: dict[str, str] = {
    "SOCRATEXT_OPT": "where deploy/local/install.sh puts Kafka and MinIO (socratext/stack/processes.py)",
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


def env_name(field: str) -> str:
    """The environment variable of a setting."""
    return "SOCRATEXT_" + field.upper()


def _shown(value: object) -> str:
    if isinstance(value, SecretStr):
        return "**********" if value.get_secret_value() else ""
    return str(value)


def describe(settings: Settings) -> list[dict[str, str]]:
    """Every setting as {variable, value, default, description}, secrets masked: what `socratext
    settings` prints and what docs/configuration.md is generated from (one source: the fields)."""
    rows = []
    for name, f in Settings.model_fields.items():
        default = f.get_default(call_default_factory=True)
        if name == "state_dir":  # a path inside the checkout: say where, not this machine's absolute path
            default = "<repo>/.state"
        rows.append({"variable": env_name(name), "value": _shown(getattr(settings, name)),
                     "default": _shown(default), "description": f.description or ""})
    return rows


def markdown_table() -> str:
    """The settings as a Markdown table, with defaults (not this machine's values)."""
    lines = ["| variable | default | what |", "| --- | --- | --- |"]
    for row in describe(Settings.model_construct()):
        default = f"`{row['default']}`" if row["default"] else "empty"
        what = row["description"].replace("|", "\\|")
        lines.append(f"| `{row['variable']}` | {default} | {what} |")
    return "\n".join(lines) + "\n"


class SettingsError(ValueError):
    """A `SOCRATEXT_*` variable holds a value its setting refuses; the message names the variable."""


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment, with an error that names the variable and what it must be (pydantic's
    own names the field only)."""
    from pydantic import ValidationError

    try:
        return Settings() if environ is None else _from(environ)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            field = str(e["loc"][0]) if e["loc"] else "?"
            problems.append(f"{env_name(field)}={e.get('input')!r}: {e['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None


def _from(environ: Mapping[str, str]) -> Settings:
    """Settings with the `SOCRATEXT_*` values of `environ` (over the process environment's)."""
    prefix = "SOCRATEXT_"
    return Settings(**{k[len(prefix):].lower(): v for k, v in environ.items()  # type: ignore[arg-type]
                       if k.startswith(prefix) and k[len(prefix):].lower() in Settings.model_fields})


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
    return load_settings()
