"""The benchmark scripts stay runnable: each runs here with a tiny N and must write its JSON.

No figure is asserted (speed belongs to the bench output, not to tests); what is checked is that every
script runs end to end and reports what docs/benchmarks.md says it reports. The batching simulation, which
turns measured call times into latencies, is checked on cases with a known answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.bench_batching import service_time, simulate
from bench.stackrun import percentile
from socratext.ocr import tesserocr_backend
from socratext.settings import REPO_ROOT, Settings

SROIE = REPO_ROOT.parent / "shared" / "data" / "sroie"
pytestmark = pytest.mark.filterwarnings("ignore:.*(read_text|open_text) is deprecated:DeprecationWarning")


def test_percentile_nearest_rank() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile(list(map(float, range(1, 101))), 99) == 99.0
    assert percentile([5.0], 99) == 5.0


def test_service_time_interpolates() -> None:
    table = {1: 0.1, 4: 0.4, 8: 0.5}
    assert service_time(table, 4) == 0.4
    assert service_time(table, 2) == pytest.approx(0.2)
    assert service_time(table, 6) == pytest.approx(0.45)
    assert service_time(table, 16) == pytest.approx(1.0)  # beyond the largest: per-item cost of the largest


def test_simulate_window_cost_at_low_load() -> None:
    """At a trickle every batch holds one receipt: with batch size 1 latency is the call time; above one,
    take() holds a lone receipt until its window timer goes off, i.e. up to the window, W/2 on average."""
    table = {1: 0.1, 8: 0.4}
    assert max(simulate(0.01, 1, 0.5, table, n=300)) == pytest.approx(0.1)
    lat = simulate(0.01, 8, 0.5, table, n=300)
    assert 0.1 <= min(lat) and max(lat) <= 0.6 + 1e-9
    assert sum(lat) / len(lat) == pytest.approx(0.35, abs=0.05)
    with pytest.raises(ValueError, match="full batches"):
        simulate(0.01, 8, 0.0, table)
    assert max(simulate(0.01, 1, 0.0, table, n=50)) == pytest.approx(0.1)  # size 1: every event is a batch


def test_simulate_batches_fill_under_load() -> None:
    """Arrivals faster than single calls can serve: batches fill up and latency stays bounded."""
    table = {1: 0.1, 8: 0.2}
    lat = simulate(20.0, 8, 0.5, table, n=2000)  # 20/s: one-by-one would need 2 s per second
    assert max(lat) < 2.0
    assert percentile(simulate(20.0, 1, 0.5, table, n=2000), 50) > 10  # unbatched: the queue grows


def _run(module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> None:
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.slow
def test_bench_bound_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bound.json"
    _run("bench.bench_bound", "--n", "1", "--out", str(out))
    res = json.loads(out.read_text())
    assert res["cpu_ms_total"] > 0 and res["bound_rps_all_cores"] > 0 and len(res["loadavg_start"]) == 3


@pytest.mark.slow
@pytest.mark.skipif(not (SROIE / "img").is_dir(), reason="no SROIE data")
@pytest.mark.skipif(not tesserocr_backend.available(), reason="tesserocr not installed")
def test_bench_ocr_backends_smoke(tmp_path: Path) -> None:
    out = tmp_path / "ocr_backends.json"
    _run("bench.bench_ocr_backends", "--n", "2", "--chunk", "2", "--variants",
         "tesserocr,tesserocr-threads2,ppocr-det-tesseract-lines", "--out", str(out))
    res = json.loads(out.read_text())
    names = [r["name"] for r in res["results"]]
    # the baseline is always measured; the hybrid (PP-OCR's lines read by Tesseract) reads words too
    assert names == ["pytesseract", "tesserocr", "tesserocr-threads2", "ppocr-det-tesseract-lines"]
    for r in res["results"]:
        assert 0 < r["recall"] <= 1 and r["cpu_s_per_receipt"] > 0 and r["speedup_wall_vs_pytesseract"] > 0
    assert res["machine"]["cpus"] and len(res["machine"]["loadavg_start"]) == 3


@pytest.mark.slow
@pytest.mark.skipif(not tesserocr_backend.available(), reason="tesserocr not installed")
def test_bench_ocr_backends_on_french_synthetic_receipts(tmp_path: Path) -> None:
    """The OCR bench also reads French receipts (synthetic ones: no French scan is at hand), one language
    model against the default two, recall measured against the generator's own words."""
    out = tmp_path / "ocr_fr.json"
    _run("bench.bench_ocr_backends", "--dataset", "synthetic", "--n", "2", "--chunk", "2", "--variants",
         "tesserocr-noinvert,tesserocr-noinvert-fra", "--out", str(out))
    res = json.loads(out.read_text())
    assert res["dataset"].startswith("synthetic French") and res["n_images"] == 2
    rows = {r["name"]: r for r in res["results"]}
    assert rows["tesserocr-noinvert-fra"]["languages"] == "fra"
    assert rows["tesserocr-noinvert"]["languages"] == "fra+eng"
    assert all(0.5 < r["recall"] <= 1 for r in rows.values())  # printed text, lightly degraded


@pytest.mark.slow
def test_bench_batching_smoke(tmp_path: Path) -> None:
    out = tmp_path / "batching.json"
    _run("bench.bench_batching", "--n", "2", "--model", "rules", "--sizes", "1,2", "--windows", "0.1,0.5",
         "--reps", "1", "--out", str(out))
    res = json.loads(out.read_text())
    assert [m["batch_size"] for m in res["measured"]] == [1, 2]
    assert len(res["simulated"]) == 4 and all(r["model_50pct"]["p99_s"] > 0 for r in res["simulated"])


def _stack_env(stack: Settings) -> dict[str, str]:
    return {"SOCRATEXT_STATE_DIR": str(stack.state_dir), "SOCRATEXT_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
            "SOCRATEXT_S3_ENDPOINT": stack.s3_endpoint}


@pytest.mark.stack
@pytest.mark.slow
def test_bench_pipeline_smoke(stack: Settings, tmp_path: Path) -> None:
    out = tmp_path / "pipeline.json"
    _run("bench.bench_pipeline", "--n", "2", "--bound-n", "1", "--out", str(out), env=_stack_env(stack))
    res = json.loads(out.read_text())
    closed, opened = res["closed"], res["open"]
    assert closed["extracted"] == 2 and opened["extracted"] == 2
    assert closed["ratio_to_bound"] > 0 and closed["ratio_to_wall_bound"] > 0
    assert opened["offered_rps"] > 0 and opened["latency_s"]["p99"] >= opened["latency_s"]["p50"] > 0
    assert closed["cpu_s_per_receipt"]["worker0-all"] > 0 and res["worker_peak_rss_mb"][0] > 50


@pytest.mark.stack
@pytest.mark.slow
def test_bench_memory_smoke(stack: Settings, tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    _run("bench.bench_memory", "--n", "1", "--runs", "split-rules", "--out", str(out), env=_stack_env(stack))
    rows = json.loads(out.read_text())["rows"]
    assert [r["kind"] for r in rows] == ["ocr", "extract-rules"]
    assert all(r["peak_rss_mb"] > 50 and r["extracted"] == 1 for r in rows)


@pytest.fixture(scope="module")
def ocr_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two OCR events made by bench_gpu's first step with the real OCR stage."""
    events = tmp_path_factory.mktemp("events") / "events.jsonl"
    _run("bench.bench_gpu", "make-events", "--n", "2", "--out", str(events))
    return events


@pytest.mark.slow
def test_bench_gpu_smoke_on_cpu(ocr_events: Path, tmp_path: Path) -> None:
    """The GPU bench's two steps run here on the CPU with the tiny config: events made with the real OCR
    stage (carrying their page image, as the OCR agent sends them), then the model and the extraction
    stage (in a spawned worker process) measured on them."""
    out = tmp_path / "gpu.json"
    lines = ocr_events.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(x)["event"]["page_image"] for x in lines)
    _run("bench.bench_gpu", "run", "--events", str(ocr_events), "--config", "tiny", "--device", "cpu",
         "--sizes", "2", "--windows", "2", "--procs", "1", "--rounds", "1", "--stage-batch", "2",
         "--model-batch", "2", "--parts", "model,stage", "--out", str(out))
    res = json.loads(out.read_text())
    model, stage = ([r for r in res["rows"] if r["part"] == p] for p in ("model", "stage"))
    assert [(r["batch"], r["precision"], r["padding"]) for r in model] == [(2, "bf16-autocast", "sorted")]
    assert model[0]["rps"] > 0 and res["tokens_per_window"]["mean"] > 2
    assert stage[0]["receipts"] == 2 and stage[0]["events_out"] >= 2
    assert stage[0]["deadletters_in_warmup"] == 0


def test_mps_is_refused_without_a_gpu_and_a_no_op_when_not_asked() -> None:
    import torch

    from bench.bench_gpu import mps_daemon

    env = dict(os.environ)
    with mps_daemon(False, torch.device("cpu")) as on:
        assert on is False
    with pytest.raises(SystemExit, match="needs a CUDA device"), mps_daemon(True, torch.device("cpu")):
        pass
    assert dict(os.environ) == env


def test_step_clock_times_and_restores() -> None:
    from types import SimpleNamespace

    from bench.bench_extract_steps import StepClock, patched

    synced: list[int] = []
    clock = StepClock(sync=lambda: synced.append(1))
    obj = SimpleNamespace(f=lambda x: x + 1, g=lambda: None)
    original = obj.f
    with patched([(obj, "f", "forward", True), (obj, "g", "other", False)], clock):
        assert obj.f is not original
        assert obj.f(1) == 2 and obj.f(2) == 3
        obj.g()
    assert obj.f is original  # restored
    assert synced == [1, 1]  # only the step asked to synchronise does
    assert set(clock.seconds) == {"forward", "other"} and clock.seconds["forward"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("model", ["default", "layoutlmv2-tiny"])
def test_bench_extract_steps_accounts_for_the_stage(ocr_events: Path, tmp_path: Path, model: str) -> None:
    """Every step the stage runs is timed: the steps add up to the batch's wall time, and the steps the
    model kind runs (the image path of LayoutLMv2) are non-zero; the rules inside the combined default
    cost next to nothing, since the OCR events (as make-events writes them) carry the rules' labels."""
    from bench.bench_extract_steps import STEPS

    out = tmp_path / "steps.json"
    frozen = model == "default"  # the worker's way; the other run leaves the collector as it is
    _run("bench.bench_extract_steps", "--events", str(ocr_events), "--model", model, "--device", "cpu",
         "--stage-batch", "2", "--rounds", "2", "--out", str(out), *([] if frozen else ["--no-gc-freeze"]))
    res = json.loads(out.read_text())
    assert res["gc_frozen"] is frozen
    ms = res["ms_per_receipt"]
    assert list(ms) == list(STEPS) and res["receipts"] == 4
    for step in ("parse", "tokenise", "forward", "merge", "assemble", "serialise"):
        assert ms[step] > 0, step
    if model == "default":  # the OCR events carry the rules' labels: the combined model takes them
        assert 0 <= ms["rules"] < ms["parse"]
    else:
        assert ms["rules"] == 0
    assert sum(ms.values()) == pytest.approx(res["total_ms_per_receipt"], abs=0.01)
    assert 0 < res["host_ms_per_receipt"] < res["total_ms_per_receipt"]


def test_steady_rps_ignores_the_ramp_and_the_tail() -> None:
    from bench.stackrun import steady_rps

    ends = [5.0] + [10.0 + i for i in range(19)] + [60.0]  # slow start, 1/s, a straggler
    assert steady_rps(ends) == pytest.approx(1.0)
    assert steady_rps([1.0, 2.0]) is None and steady_rps([3.0] * 20) is None
