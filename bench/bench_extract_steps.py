"""Where the extraction stage's time goes, step by step, in one worker process.

    .venv/bin/python -m bench.bench_extract_steps [--events .devcarry/events.jsonl] [--model default]
        [--device auto] [--stage-batch 128] [--rounds 3] [--out bench/results/extract_steps.json]

The events file is `bench.bench_gpu make-events`' (OCR events of synthetic receipts). Each batch goes
through the real `process_extract_batch`; its leaf steps are timed in place by wrapping the functions it
calls (a few microseconds per call): parse the OCR event, tokenise into windows (`encode_page`), the model's
forward pass (on a GPU, synchronised so that the kernels' time is counted here and not at the copy back),
merge the windows, row smoothing, the rules' labelling (a combined extractor runs the rules on every page),
field assembly, and the output event's JSON. What is left (collation, softmax and copy back, the combination
of model and rules, Python glue) is "other".

Why: a GPU runs the forward pass of a LayoutLMv2-base-sized model at 1,100-1,400 receipts/s (bf16, batch
64; bench_gpu), but one worker process does everything else on one CPU thread while the GPU waits, so its
ceiling is 1000 / (host ms per receipt) receipts/s, and several processes on one GPU take turns on it
(bench/results/gpu_h*.json). The host ms per receipt, measured here on CPU, is what has to shrink for one
process to keep a GPU busy; ratios between steps hold on any machine, absolute times do not.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.report import write_json

STEPS = ("parse", "tokenise", "forward", "merge", "smoothing", "rules", "assemble", "serialise", "other")


class StepClock:
    """Seconds spent in each wrapped function, by step name."""

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.sync = sync

    def timed(self, step: str, fn: Callable[..., Any], sync: bool = False) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                out = fn(*args, **kwargs)
                if sync and self.sync is not None:
                    self.sync()
                return out
            finally:
                self.seconds[step] += time.perf_counter() - t0
        return wrapper


@contextmanager
def patched(targets: list[tuple[Any, str, str, bool]], clock: StepClock) -> Iterator[None]:
    """Replace `obj.attr` by its timed wrapper for each (obj, attr, step, sync) target, then restore."""
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _, _ in targets]
    try:
        for obj, attr, step, sync in targets:
            setattr(obj, attr, clock.timed(step, getattr(obj, attr), sync))
        yield
    finally:
        for obj, attr, fn in reversed(saved):
            setattr(obj, attr, fn)


def load_extractor(model: str, device: str) -> Any:
    """The extractor as a worker builds it (`socratext.pipeline.load_extractor`): "default" is the bundled
    model combined with the rules, "rules" the rules alone, or a model directory; "layoutlmv2-base" (or
    -small, -tiny) is bench_gpu's LayoutLMv2 of that size with random weights, which looks at the page
    image (speed does not depend on the weights' values)."""
    from socratext.model.extractor import resolve_device
    from socratext.pipeline import load_extractor as service_extractor
    from socratext.settings import Settings

    if not model.startswith("layoutlmv2-"):
        return service_extractor(model, Settings(device=device))
    from bench.bench_gpu import random_layoutlmv2_extractor

    return random_layoutlmv2_extractor(model.removeprefix("layoutlmv2-"), resolve_device(device))


def targets_for(extractor: Any) -> list[tuple[Any, str, str, bool]]:
    """The functions to time for this extractor (a bare layout model, a combined one, or the rules)."""
    import socratext.model.extractor as mx
    import streams.agents.extract as ax

    out: list[tuple[Any, str, str, bool]] = [
        (ax, "parse_ocr", "parse", False),
        (ax, "extracted_event", "serialise", False),
        (ax, "review_event", "serialise", False),
    ]
    model = getattr(extractor, "model", None)
    rules = getattr(extractor, "rules", None)
    if model is not None and hasattr(model, "word_probabilities"):  # combined: the layout model inside
        out.append((rules, "label", "rules", False))
    elif hasattr(extractor, "word_probabilities"):
        model = extractor
    else:  # the rules alone
        out.append((extractor, "label", "rules", False))
        model = None
    if model is not None:
        out += [(mx, "encode_page", "tokenise", False), (mx, "merge_windows", "merge", False),
                (mx, "row_consistent", "smoothing", False), (model.model, "forward", "forward", True)]
    return out


def measure(raws: list[bytes], model: str, device: str, stage_batch: int, rounds: int,
            gc_freeze: bool = True) -> dict[str, Any]:
    """Run the events through `process_extract_batch` `rounds` times (after one warm-up batch) with every
    step timed; ms per receipt by step, the host part and the one-process ceiling it implies.
    `gc_freeze`: freeze the heap once the model is loaded, as a worker does (`settle_heap`)."""
    import torch

    from socratext.fields.normalize import clear_caches
    from socratext.settings import Settings
    from streams.agents.extract import ExtractDeps, process_extract_batch, release_heap, settle_heap

    extractor = load_extractor(model, device)
    inner = getattr(extractor, "model", extractor)
    dev = getattr(inner, "device", torch.device("cpu"))
    sync = torch.cuda.synchronize if getattr(dev, "type", "cpu") == "cuda" else None
    deps = ExtractDeps(Settings(), extractor)
    batches = [raws[i:i + stage_batch] for i in range(0, len(raws), stage_batch)]
    process_extract_batch(batches[0], deps)  # warm-up: first calls, allocator
    if gc_freeze:
        settle_heap()
    clock = StepClock(sync)
    deps.assemble = clock.timed("assemble", deps.assemble)
    n = 0
    with patched(targets_for(extractor), clock):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(rounds):
            clear_caches()  # each round reads the receipts afresh, as the service reads new ones
            for b in batches:
                process_extract_batch(b, deps)
                n += len(b)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    release_heap()
    ms = {s: round(clock.seconds.get(s, 0.0) * 1e3 / n, 3) for s in STEPS if s != "other"}
    ms["other"] = round(wall * 1e3 / n - sum(ms.values()), 3)
    host = wall * 1e3 / n - ms["forward"]
    return {"model": f"{extractor.name} {extractor.version}", "device": str(dev), "receipts": n,
            "stage_batch": stage_batch, "ms_per_receipt": ms,
            "total_ms_per_receipt": round(wall * 1e3 / n, 3),
            "cpu_ms_per_receipt": round(cpu * 1e3 / n, 3), "host_ms_per_receipt": round(host, 3),
            "one_process_ceiling_rps": round(1000 / host, 1) if host > 0 else None,
            "torch_threads": torch.get_num_threads(), "gc_frozen": gc_freeze}


def table(row: dict[str, Any]) -> str:
    lines = [f"{row['model']} on {row['device']}, {row['receipts']} receipts, "
             f"batches of {row['stage_batch']}",
             f"{'step':<10} {'ms/receipt':>10} {'share':>6}"]
    total = row["total_ms_per_receipt"]
    for s in STEPS:
        v = row["ms_per_receipt"][s]
        lines.append(f"{s:<10} {v:>10.3f} {v / total:>6.1%}")
    lines.append(f"{'total':<10} {total:>10.3f}   (CPU {row['cpu_ms_per_receipt']} ms; host part "
                 f"{row['host_ms_per_receipt']} ms → one process ≤ {row['one_process_ceiling_rps']} "
                 f"receipts/s with a free forward pass)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from bench.bench_gpu import read_events

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", default=".devcarry/events.jsonl", help="bench.bench_gpu make-events output")
    ap.add_argument("--model", default="default",
                    help="default | rules | a model directory | layoutlmv2-base|small|tiny (random weights)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--stage-batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-gc-freeze", action="store_true",
                    help="leave the heap to Python's collector as is (a worker freezes it once loaded)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/extract_steps.json"))
    opts = ap.parse_args(argv)
    raws, _ = read_events(Path(opts.events))
    row = measure(raws, opts.model, opts.device, opts.stage_batch, opts.rounds, not opts.no_gc_freeze)
    row["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                      "loadavg": [round(x, 2) for x in os.getloadavg()]}
    print(table(row))
    write_json(opts.out, row)


if __name__ == "__main__":
    main()
