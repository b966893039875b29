"""Start a streaming worker: `python -m streams.worker --stage ocr|extract|all`.

One process = one Faust worker running the agents of its stage, a metrics/health HTTP server on
`settings.metrics_port`, and JSON-lines logs on stderr (one object per line, with `receipt_id`,
`stage` and `code` when the record carries them) for the log pipeline. The Faust worker is started
programmatically (`faust.Worker(app).execute_from_commandline()`), not through Faust's click-based CLI,
so the worker does not depend on the click version at all. SIGTERM/SIGINT stop it gracefully: the
current batch finishes, its results are published, offsets are committed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from socratext.settings import get_settings
from streams import STAGES

_STD_ATTRS = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and every `extra=` field of the record."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in vars(record).items():
            if k not in _STD_ATTRS and not k.startswith("_"):
                out[k] = v if isinstance(v, str | int | float | bool | type(None)) else repr(v)
        if record.exc_info or record.exc_text:  # exc_text: already formatted (and redacted) by the filter
            out["exc"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str = "info", settings: Any = None) -> None:
    """JSON lines on stderr, through a filter that masks card numbers and the settings' secrets in every
    record (socratext.privacy), whichever library logged it."""
    from socratext.privacy import install_log_redaction

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    install_log_redaction(settings or get_settings(), root)
    for noisy in ("aiokafka", "botocore", "urllib3", "faust.transport.drivers.aiokafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def run(stage: str = "all", loglevel: str = "info", metrics_port: int | None = None) -> None:
    """Run the worker of `stage` until it is stopped (blocks; exits the process when done)."""
    import faust

    from socratext.kafka_config import describe
    from streams.app import Runtime, create_app
    from streams.metrics import MetricsServer

    settings = get_settings()
    configure_logging(loglevel, settings)
    logging.getLogger("streams").info("worker %s: kafka %s", stage, describe(settings),
                                      extra={"stage": stage})
    runtime = Runtime(settings)
    app = create_app(settings, stage=stage, runtime=runtime)
    port = settings.metrics_port if metrics_port is None else metrics_port
    if port >= 0:
        server = MetricsServer(runtime.metrics, port, health=runtime.health).start()
        logging.getLogger("streams").info("worker %s: metrics on port %d", stage, server.port,
                                          extra={"stage": stage, "metrics_port": server.port})
    worker = faust.Worker(app, loglevel=loglevel, override_logging=False, redirect_stdouts=False, quiet=True)
    worker.execute_from_commandline()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m streams.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--stage", choices=STAGES, default="all")
    parser.add_argument("--loglevel", default="info")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="default settings.metrics_port; 0 = any free port, -1 = no metrics server")
    args = parser.parse_args(argv)
    from socratext.settings import SettingsError

    try:
        get_settings()
    except SettingsError as exc:  # a bad SOCRATEXT_* value: one line naming it, not a traceback
        parser.exit(2, f"error: {exc}\n")
    run(args.stage, args.loglevel, args.metrics_port)


if __name__ == "__main__":
    main()
