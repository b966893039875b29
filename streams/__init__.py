"""The streaming service: Kafka topics → OCR stage → extraction stage → results, on Faust.

`streams.topics` declares the topics and schemas, `streams.events` parses and builds events (pure),
`streams.agents` holds the two stages, `streams.app` the Faust app, `streams.worker` the process entry
point and `streams.metrics` the Prometheus metrics and health endpoint.
"""

import socratext  # noqa: F401, E402 - first: sets OMP_THREAD_LIMIT before torch or tesserocr loads

STAGES = ("ocr", "extract", "all")
"""What one worker process runs: the OCR stage, the extraction stage, or both (`--stage`)."""
