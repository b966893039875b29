"""Generate the Grafana dashboard `deploy/grafana/dashboards/socratext.json`.

    python deploy/grafana/gen_dashboard.py > deploy/grafana/dashboards/socratext.json

Why a generator: 20 panels of Grafana JSON are easy to break by hand (duplicate ids, overlapping grid
positions, a query copied with the wrong metric). Here each panel is one call with its PromQL, and
tests/test_deploy.py checks that the committed JSON is this script's output, that every `socratext_*`
metric queried is one `streams.metrics` exports, and (with promtool) that every query parses.
Metric names: streams/metrics.py; consumer lag: kafka-exporter's `kafka_consumergroup_lag`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"
OCR_IN = 'socratext_receipts_total{stage="ocr", outcome="in"}'
EXTRACT_OUT = 'socratext_receipts_total{stage="extract", outcome="out"}'


def steps(*pairs: tuple[str, float | None]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in pairs]}


GREEN = steps(("green", None))


class Dashboard:
    """Panels laid out top to bottom; each `row()` starts a new band of the 24-column grid."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.y = 0

    def _add(self, panel: dict[str, Any]) -> None:
        panel["id"] = len(self.panels) + 1
        self.panels.append(panel)

    def row(self, title: str, height: int) -> int:
        """A collapsible row header; returns the y of the band below it (`height` tall)."""
        self._add({"type": "row", "title": title, "collapsed": False, "panels": [],
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}})
        top = self.y + 1
        self.y = top + height
        return top

    def stat(self, title: str, desc: str, expr: str, x: int, y: int, unit: str = "short",
             thresholds: dict[str, Any] = GREEN) -> None:
        self._add({"type": "stat", "title": title, "description": desc, "datasource": DS,
                   "gridPos": {"h": 4, "w": 4, "x": x, "y": y},
                   "fieldConfig": {"defaults": {"unit": unit, "thresholds": thresholds}, "overrides": []},
                   "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                               "colorMode": "value", "graphMode": "area", "textMode": "auto"},
                   "targets": [target(expr)]})

    def timeseries(self, title: str, desc: str, targets: list[dict[str, Any]], x: int, y: int, w: int = 12,
                   unit: str = "short", stack: bool = False, overrides: list[dict[str, Any]] | None = None,
                   ) -> None:
        custom = {"lineWidth": 1, "fillOpacity": 10, "stacking": {"mode": "normal" if stack else "none"}}
        self._add({"type": "timeseries", "title": title, "description": desc, "datasource": DS,
                   "gridPos": {"h": 8, "w": w, "x": x, "y": y},
                   "fieldConfig": {"defaults": {"unit": unit, "custom": custom},
                                   "overrides": overrides or []},
                   "options": {"legend": {"displayMode": "table", "placement": "bottom",
                                          "calcs": ["mean", "max", "lastNotNull"]},
                               "tooltip": {"mode": "multi", "sort": "desc"}},
                   "targets": targets})

    def heatmap(self, title: str, desc: str, expr: str, x: int, y: int, w: int) -> None:
        self._add({"type": "heatmap", "title": title, "description": desc, "datasource": DS,
                   "gridPos": {"h": 8, "w": w, "x": x, "y": y},
                   "options": {"calculate": False, "yAxis": {"unit": "percentunit"}, "cellGap": 1,
                               "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
                               "tooltip": {"mode": "single", "yHistogram": True}},
                   "targets": [target(expr, "{{le}}", format="heatmap")]})

    def table(self, title: str, desc: str, expr: str, x: int, y: int, w: int) -> None:
        self._add({"type": "table", "title": title, "description": desc, "datasource": DS,
                   "gridPos": {"h": 8, "w": w, "x": x, "y": y}, "options": {"showHeader": True},
                   "transformations": [{"id": "organize",
                                        "options": {"excludeByName": {"Time": True, "Value": True}}}],
                   "targets": [target(expr, format="table", instant=True, range=False)]})


def target(expr: str, legend: str = "", ref: str = "A", **extra: Any) -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": True, **extra}


def share(numerator: str, denominator: str) -> str:
    """A ratio of two rates that is 0, not NaN, while the denominator is idle."""
    return f"sum(rate({numerator}[{RI}])) / clamp_min(sum(rate({denominator}[{RI}])), 1e-9)"


def quantile(q: float, metric: str, by: str = "") -> str:
    return f"histogram_quantile({q}, sum by (le{', ' + by if by else ''}) (rate({metric}_bucket[{RI}])))"


def build() -> dict[str, Any]:
    d = Dashboard()
    y = d.row("Overview", 4)
    d.stat("Uploads / s", "Receipts entering stage 1 (OCR input).",
           f"sum(rate({OCR_IN}[{RI}]))", 0, y, "reqps")
    d.stat("Extracted / s", "Receipts leaving stage 2 (receipts.extracted).",
           f"sum(rate({EXTRACT_OUT}[{RI}]))", 4, y, "reqps")
    d.stat("p95 upload → result",
           "95th percentile of the end-to-end latency (uploaded_at to extracted event).",
           quantile(0.95, "socratext_end_to_end_seconds"), 8, y, "s",
           steps(("green", None), ("orange", 30), ("red", 60)))
    d.stat("Consumer lag", "Messages not yet consumed on the work topics (kafka-exporter).",
           'sum(kafka_consumergroup_lag{consumergroup=~"$consumergroup", '
           'topic=~"receipts\\\\.(uploaded|ocr)"})',
           12, y, thresholds=steps(("green", None), ("orange", 100), ("red", 1000)))
    d.stat("Dead-letter share", "Dead-lettered events / receipts entering the pipeline.",
           share("socratext_deadletter_total", OCR_IN), 16, y, "percentunit",
           steps(("green", None), ("orange", 0.01), ("red", 0.05)))
    d.stat("Review share", "Extracted receipts below the review threshold (sent to receipts.review).",
           share("socratext_review_total", EXTRACT_OUT), 20, y, "percentunit",
           steps(("green", None), ("orange", 0.3), ("red", 0.5)))

    y = d.row("Throughput and lag", 8)
    d.timeseries("Throughput per stage",
                 "Events per second by stage and outcome (in, out, failed, review, ...).",
                 [target(f"sum by (stage, outcome) (rate(socratext_receipts_total[{RI}]))",
                         "{{stage}} {{outcome}}")], 0, y, unit="reqps")
    d.timeseries("Consumer lag per topic",
                 "kafka_consumergroup_lag summed over partitions. Rising = the stage does not keep up "
                 "(KEDA scales on this).",
                 [target("sum by (consumergroup, topic) "
                         '(kafka_consumergroup_lag{consumergroup=~"$consumergroup"})',
                         "{{consumergroup}} {{topic}}")], 12, y)

    y = d.row("Latency", 8)
    d.timeseries("End-to-end latency (upload → extracted)",
                 "Percentiles from the socratext_end_to_end_seconds histogram.",
                 [target(quantile(q, "socratext_end_to_end_seconds"), f"p{round(q * 100)}", ref)
                  for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))], 0, y, unit="s")
    d.timeseries("Step latency p95",
                 "Per processing step (fetch, decode, ocr, model, assemble), from socratext_stage_seconds.",
                 [target(quantile(0.95, "socratext_stage_seconds", "stage"), "{{stage}} p95"),
                  target(f"sum by (stage) (rate(socratext_stage_seconds_sum[{RI}]))"
                         f" / sum by (stage) (rate(socratext_stage_seconds_count[{RI}]))",
                         "{{stage}} mean", "B")],
                 12, y, unit="s")

    y = d.row("Quality", 8)
    d.timeseries("Dead letters by code",
                 "Events sent to receipts.deadletter per second, by stable error code.",
                 [target(f"sum by (code) (rate(socratext_deadletter_total[{RI}]))", "{{code}}")], 0, y, w=8,
                 unit="reqps", stack=True)
    d.timeseries("Review rate", "Receipts sent to review per second, and as a share of extracted receipts.",
                 [target(f"sum(rate(socratext_review_total[{RI}]))", "review / s"),
                  target(share("socratext_review_total", EXTRACT_OUT), "share", "B")],
                 8, y, w=8, unit="reqps",
                 overrides=[{"matcher": {"id": "byName", "options": "share"},
                             "properties": [{"id": "unit", "value": "percentunit"},
                                            {"id": "custom.axisPlacement", "value": "right"}]}])
    d.heatmap("Confidence distribution",
              "Overall receipt confidence (socratext_confidence buckets) over time; receipts under "
              "the review threshold (0.75 by default) go to receipts.review.",
              f"sum by (le) (increase(socratext_confidence_bucket[{RI}]))", 16, y, 8)

    y = d.row("Model and batching", 8)
    d.table("Model version per worker",
            "socratext_model_info: the extractor each extraction worker loaded. Two versions at once = a "
            "rollout (or rollback) in progress.",
            "max by (instance, name, version) (socratext_model_info)", 0, y, 8)
    d.timeseries("Micro-batch size",
                 "Receipts per extractor call: mean and p95 (batch_size / batch_window_s).",
                 [target(share("socratext_batch_size_sum", "socratext_batch_size_count"), "mean"),
                  target(quantile(0.95, "socratext_batch_size"), "p95", "B")], 8, y, w=8)
    d.timeseries("Workers up", "Scrape health of every worker replica, per service.",
                 [target('sum by (service) (up{job="socratext-worker"})', "{{service}}")], 16, y, w=8)

    y = d.row("OCR engine and delivery", 8)
    d.table("OCR engine per worker",
            "socratext_ocr_engine_info: the OCR engine each OCR worker runs, the device it was asked for "
            "and the device it runs on. requested=cuda with device=cpu means CUDA could not run there "
            "(the worker logs why).",
            "max by (instance, backend, requested, device) (socratext_ocr_engine_info)", 0, y, 12)
    d.timeseries("Exactly-once transactions",
                 "Transactions per second by input topic and outcome (streams/delivery.py). committed: "
                 "outputs and input offsets written together. fenced: a batch dropped because a rebalance "
                 "moved its partition (it is read again from the committed offset; bursts at scale-out are "
                 "normal). aborted: a transaction failed and its worker stopped to restart from the "
                 "committed offsets (investigate).",
                 [target(f"sum by (topic, outcome) (rate(socratext_transactions_total[{RI}]))",
                         "{{topic}} {{outcome}}")], 12, y, unit="reqps")

    return {
        "uid": "socratext-pipeline",
        "title": "Socratext pipeline",
        "description": "Streaming receipt extraction: throughput, latency, lag, dead letters, review, "
                       "confidence, model.",
        "tags": ["socratext"],
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-3h", "to": "now"},
        "links": [],
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                  "name": "Annotations & Alerts", "type": "dashboard"}]},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {"text": "Prometheus", "value": "prometheus"}, "hide": 0, "refresh": 1},
            {"name": "consumergroup", "label": "Consumer group", "type": "query", "datasource": DS,
             "query": {"query": "label_values(kafka_consumergroup_lag, consumergroup)", "refId": "group"},
             "definition": "label_values(kafka_consumergroup_lag, consumergroup)",
             "current": {"text": "All", "value": "$__all"}, "includeAll": True, "allValue": ".*",
             "multi": False, "refresh": 2, "hide": 0, "sort": 1},
        ]},
        "panels": d.panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
