"""The worker's own Prometheus metrics, served with a `/healthz` endpoint on `settings.metrics_port`.

We count ourselves instead of relying on Faust's Prometheus monitor: that monitor counts events as they
pass through a stream, and events consumed through `stream.take()` (our stage-2 micro-batches) are
not reported to it per event, so its numbers would be wrong exactly where batching matters. An own
`CollectorRegistry` keeps tests independent (one registry per `StreamMetrics`) and keeps the endpoint
free of unrelated default collectors.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)
E2E_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


class StreamMetrics:
    """All metrics of one worker process (both stages share it when run together)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.receipts = Counter("socratext_receipts", "Events per stage and outcome (in, out, failed)",
                                ["stage", "outcome"], registry=r)
        self.stage_seconds = Histogram("socratext_stage_seconds", "Time per receipt in a processing step",
                                       ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.end_to_end = Histogram("socratext_end_to_end_seconds",
                                    "From uploaded_at to the extracted event", buckets=E2E_BUCKETS,
                                    registry=r)
        self.batch_size = Histogram("socratext_batch_size", "Receipts per extractor micro-batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.confidence = Histogram("socratext_confidence", "Overall confidence of extracted receipts",
                                    buckets=CONFIDENCE_BUCKETS,
                                    registry=r)
        self.review = Counter("socratext_review", "Receipts sent to the review topic", registry=r)
        self.deadletter = Counter("socratext_deadletter", "Events sent to the dead-letter topic, by code",
                                  ["code"], registry=r)
        self.transactions = Counter("socratext_transactions",
                                    "Exactly-once delivery: transactions per input topic and outcome "
                                    "(committed; aborted = the worker stops; fenced = the partition moved "
                                    "to another worker, which redoes the batch)",
                                    ["topic", "outcome"], registry=r)
        self.model_info = Gauge("socratext_model_info", "The extractor this worker runs (value 1)",
                                ["name", "version"], registry=r)
        self.ocr_engine = Gauge("socratext_ocr_engine_info",
                                "The OCR engine this worker runs and on which device (value 1); "
                                "requested != device means the device asked for cannot be used here",
                                ["backend", "requested", "device"], registry=r)

    def count(self, stage: str, outcome: str, n: int = 1) -> None:
        self.receipts.labels(stage=stage, outcome=outcome).inc(n)

    def observe_stage(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(stage=stage).observe(seconds)

    def set_model(self, name: str, version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(name=name, version=version).set(1)

    def set_ocr_engine(self, engine: object) -> None:
        """Publish the OCR engine's backend and device: a worker asked to run PP-OCR on CUDA where
        onnxruntime cannot (no onnxruntime-gpu, no CUDA libraries) shows `requested="cuda", device="cpu"`
        on the dashboard, not only in its log."""
        backend = str(getattr(engine, "name", type(engine).__name__))
        device = str(getattr(engine, "device", "cpu"))
        requested = "cuda" if getattr(engine, "cuda_requested", False) else device
        self.ocr_engine.clear()
        self.ocr_engine.labels(backend=backend, requested=requested, device=device).set(1)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 when absent) — for tests and the demo."""
        v = self.registry.get_sample_value(name, labels or None)
        return float(v) if v is not None else 0.0

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """`/metrics` (Prometheus text format) and `/healthz` on a daemon thread, beside the event loop."""

    def __init__(self, metrics: StreamMetrics, port: int, host: str = "0.0.0.0",
                 health: Callable[[], dict[str, object]] | None = None) -> None:
        self.metrics = metrics
        self.health = health or (lambda: {"status": "ok"})
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, server.metrics.render(), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/health"):
                    state = server.health()
                    code = 200 if state.get("status") == "ok" else 503
                    self._send(code, json.dumps(state).encode(), "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: object) -> None:  # scrapes are not worth a log line
                return

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="metrics-http", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("metrics on :%d/metrics and /healthz", self.port)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
