"""One typed settings object, read from the environment (`SOCRATEXT_*`), defaulting to the local stack.

Every adapter (OCR, model, S3, Kafka, worker) takes its configuration from here, so a deployment
changes behaviour through environment variables only (Kubernetes ConfigMap/Secret, compose file).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

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

    # --- extraction ---
    # "rules" until a layout model beats it end to end (see socratext/default_model/model_card.md);
    # "default" is the bundled layout model, or give a model directory / hub id.
    model: str = "rules"
    review_threshold: float = 0.75
    device: str = "auto"

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
    ocr_concurrency: int = 0  # receipts OCR'd at once per worker; 0 = one per core (1.9x on 2 cores)
    commit_every: int = 10
    commit_interval_s: float = 1.0
    kafka_session_timeout_s: float = 10.0


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests build their own `Settings(...)` instead of touching this."""
    return Settings()
