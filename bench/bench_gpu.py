"""The extraction stage on a GPU: a LayoutLMv2-base-sized model against issue 6's target of ≥ 1,000
receipts/s on an H100-class card, and the bundled default model's GPU path checked against its CPU path.

Two steps, because the GPU machine has no Tesseract (and this one has no GPU):

    # here: N synthetic receipts → OCR stage → the `receipts.ocr` values the extraction stage consumes
    .venv/bin/python -m bench.bench_gpu make-events --n 128 --out .devcarry/events.jsonl
    # on the GPU machine (also runs on CPU with --config tiny, which the tests do)
    python -m bench.bench_gpu run --events .devcarry/events.jsonl [--config base|small|tiny]
        [--sizes 1,16,64,256] [--procs 1,4,8] [--threads 1,2] [--mps] [--stage-batch 128]
        [--out bench/results/gpu.json]

`run` measures, with random weights (speed does not depend on their values):

1. **model**: the forward pass alone, on the real windows of the receipts (`collate` of `encode_page`, the
   host-to-device copy of ids, boxes and the 224×224 image included), receipts/s against batch size ×
   precision (fp32, tf32, bf16 autocast, fp16 autocast, bf16 weights) × padding (every window to 512
   tokens; to the longest of a length-sorted batch, as the extractor does; to 64-token buckets).
2. **stage**: `streams.agents.extract.process_extract_batch`, the extraction stage's whole job: raw OCR
   events in, output events out (parse, tokenise, model on the GPU, window merge, row smoothing, field
   assembly, JSON), micro-batches of `--stage-batch`, in P worker processes sharing the GPU — how the
   service scales (one consumer per partition, several per GPU) — aggregate receipts/s, with `--threads`
   T batches at once in each process (the worker's `extract_concurrency`: one batch's Python work
   overlaps another's model pass), and with `--mps` under CUDA MPS (`mps_daemon`). Kafka I/O is not in
   it: on this stage it is a few kilobytes per receipt.
3. **agreement**: the bundled default model labels the same pages on the CPU (fp32) and on the GPU (bf16
   autocast, what `LayoutModelExtractor` uses there): share of words with the same label, largest
   probability difference. A GPU that is fast but labels differently would not count.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.report import write_json

REPO_ROOT = Path(__file__).resolve().parent.parent
PRECISIONS = ("fp32", "tf32", "bf16-autocast", "fp16-autocast", "bf16-weights")
PADDINGS = ("max512", "sorted", "bucket64")


# --- step 1, here: the events --------------------------------------------------------------------------
def make_events(n: int, seed: int, out: Path, with_page_image: bool = True,
                with_rule_labels: bool = True) -> None:
    """OCR `n` synthetic receipts with the real OCR stage; one line per receipt: the OCR event JSON the
    extraction stage consumes (with its 224×224 `page_image` and the rules' labels, as the OCR agent sends
    it by default, unless `with_page_image` is False: the extract stage then gives image models one blank
    sheet, or `with_rule_labels` is False: it then runs the rules itself) and the JPEG the OCR stage read
    (for the model-alone measurement's image input)."""
    from socratext.extractors.rules import label_page
    from socratext.imaging import load_images
    from socratext.pipeline import OcrStage
    from socratext.privacy import mask_page
    from streams.events import UploadEvent, now_iso, ocr_event
    from training.synth.generator import generate_receipt

    ocr = OcrStage()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as f:
        for i in range(n):
            buf = io.BytesIO()
            generate_receipt(seed + i, degrade=True).image.save(buf, "JPEG", quality=85)
            data = buf.getvalue()
            image = load_images(data)
            result = ocr(image)[0]
            up = UploadEvent(receipt_id=f"bench-{seed + i}", bucket="receipts", key=f"bench/{seed + i}.jpg",
                             uploaded_at=now_iso())
            # the page image rides along as the OCR agent attaches it (`ocr_event_page_image`, on by default)
            seen = (getattr(result, "image", None) or image[0]) if with_page_image else None
            page = mask_page(result.page)  # and its rules' labels (`ocr_event_rule_labels`, on by default)
            rules = label_page(page) if with_rule_labels else None
            event = ocr_event(up, page, 1, 1, {"ocr": 0.0}, seen, rules)
            f.write(json.dumps({"event": event, "jpeg": base64.b64encode(data).decode()}) + "\n")
            print(f"\r{i + 1}/{n} receipts OCR'd", end="", file=sys.stderr, flush=True)
    print(f"\nwrote {out}", file=sys.stderr)


def read_events(path: Path) -> tuple[list[bytes], list[Any]]:
    """(raw OCR event values, PIL images) from a `make-events` file."""
    from PIL import Image

    raws, images = [], []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        raws.append(json.dumps(rec["event"]).encode())
        images.append(Image.open(io.BytesIO(base64.b64decode(rec["jpeg"]))).convert("RGB"))
    return raws, images


# --- the model --------------------------------------------------------------------------------------------
def build_model(config_name: str, vocab_size: int, pad_id: int, device: Any) -> Any:
    """A LayoutLMv2 token classifier with random weights, built on the device. "base" is
    `LayoutLMv2Config()`'s own architecture (hidden 768, 12 layers, ResNeXt-101 32×8d FPN: the size of
    microsoft/layoutlmv2-base-uncased, ~200 M parameters)."""
    import torch
    from transformers import LayoutLMv2Config

    from socratext.labels import BIO_LABELS
    from socratext.model.layoutlmv2 import (
        layoutlmv2_for_token_classification,
        small_layoutlmv2_config,
        tiny_layoutlmv2_config,
    )

    labels = {"id2label": dict(enumerate(BIO_LABELS)), "label2id": {t: i for i, t in enumerate(BIO_LABELS)}}
    if config_name == "base":
        config = LayoutLMv2Config(vocab_size=vocab_size, pad_token_id=pad_id, **labels)
    elif config_name == "small":
        config = small_layoutlmv2_config(vocab_size, len(BIO_LABELS), pad_token_id=pad_id, **labels)
    else:
        config = tiny_layoutlmv2_config(vocab_size, len(BIO_LABELS), pad_token_id=pad_id, **labels)
    torch.manual_seed(0)
    with torch.device(device):
        model = layoutlmv2_for_token_classification(config)
    return model.eval()


def random_layoutlmv2_extractor(config_name: str, device: Any, batch_size: int = 8) -> Any:
    """A `LayoutModelExtractor` over `build_model(config_name)` with the bundled tokenizer, its host threads
    set as `LayoutModelExtractor.from_pretrained` sets them for the device."""
    from socratext.model.extractor import LayoutModelExtractor
    from socratext.model.threads import set_cpu_threads, set_host_threads_for_gpu

    tok = default_tokenizer()
    model = build_model(config_name, len(tok), tok.pad_token_id or 0, device)
    if device.type == "cpu":
        set_cpu_threads()
    else:
        set_host_threads_for_gpu()
    return LayoutModelExtractor(model, tok, name=f"layoutlmv2-{config_name}", device=device,
                                batch_size=batch_size)


def default_tokenizer() -> Any:
    from socratext.model.tokenizer import load_tokenizer
    from socratext.pipeline import DEFAULT_MODEL_DIR

    return load_tokenizer(DEFAULT_MODEL_DIR)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _precision(name: str, device: Any) -> tuple[Any, Any]:
    """(context manager for the forward, weight dtype) of a precision variant."""
    import contextlib

    import torch

    torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
    torch.backends.cudnn.allow_tf32 = name == "tf32"
    if name == "bf16-autocast":
        return torch.autocast(device.type, dtype=torch.bfloat16), torch.float32
    if name == "fp16-autocast":
        return torch.autocast(device.type, dtype=torch.float16), torch.float32
    if name == "bf16-weights":
        return contextlib.nullcontext(), torch.bfloat16
    return contextlib.nullcontext(), torch.float32


def _batches(windows: list[Any], pixels: list[Any], size: int, padding: str, pad_id: int) -> list[dict]:
    """Collated batches of `size` windows. "max512" pads every window to 512 tokens in arrival order;
    "sorted" sorts by length and pads to the batch's longest (what `LayoutModelExtractor` does);
    "bucket64" sorts and pads to the next multiple of 64 (fewer distinct shapes for kernel caches)."""
    import torch

    from socratext.model.encoding import collate

    order = list(range(len(windows)))
    if padding != "max512":
        order.sort(key=lambda k: len(windows[k]))
    out = []
    for b in range(0, len(order), size):
        ks = order[b:b + size]
        batch = collate([windows[k] for k in ks], pad_id, torch.stack([pixels[k] for k in ks]), "image")
        n = batch["input_ids"].shape[1]
        target = 512 if padding == "max512" else (-(-n // 64) * 64 if padding == "bucket64" else n)
        if target > n:
            extra = target - n
            batch["input_ids"] = torch.nn.functional.pad(batch["input_ids"], (0, extra), value=pad_id)
            batch["bbox"] = torch.nn.functional.pad(batch["bbox"], (0, 0, 0, extra))
            batch["attention_mask"] = torch.nn.functional.pad(batch["attention_mask"], (0, extra))
        out.append({k: (v.pin_memory() if v.device.type == "cpu" and torch.cuda.is_available() else v)
                    for k, v in batch.items()})
    return out


def measure_model(model: Any, windows: list[Any], pixels: list[Any], size: int, precision: str, padding: str,
                  pad_id: int, device: Any, repeats: int) -> dict[str, Any]:
    """Receipts/s of the forward pass over all `windows` in batches of `size` (median of `repeats` passes
    after one warm-up pass)."""
    import torch

    ctx, dtype = _precision(precision, device)
    model.to(dtype)
    batches = _batches(windows, pixels, size, padding, pad_id)

    def one_pass() -> None:
        for batch in batches:
            inputs = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            if dtype != torch.float32:
                inputs["image"] = inputs["image"].to(dtype)
            with ctx:
                logits = model(**inputs).logits
            logits.float().softmax(-1)
        _sync(device)

    times = []
    with torch.inference_mode():
        one_pass()
        for _ in range(repeats):
            t = time.perf_counter()
            one_pass()
            times.append(time.perf_counter() - t)
    model.to(torch.float32)
    wall = statistics.median(times)
    tokens = sum(int(b["attention_mask"].shape[1]) * int(b["attention_mask"].shape[0]) for b in batches)
    return {"part": "model", "batch": size, "precision": precision, "padding": padding,
            "windows": len(windows), "s_per_pass": round(wall, 4), "rps": round(len(windows) / wall, 1),
            "padded_tokens_per_window": round(tokens / len(windows), 1)}


# --- the stage ---------------------------------------------------------------------------------------------
def _stage_worker(args: dict[str, Any], barrier: Any, results: Any) -> None:
    """One extraction worker process: load the model on the device, run its share of the events through
    `process_extract_batch` `rounds` times after a warm-up, report its busy interval."""
    import torch

    from socratext.fields.normalize import clear_caches
    from socratext.model.extractor import LayoutModelExtractor
    from socratext.settings import Settings
    from streams.agents.extract import ExtractDeps, process_extract_batch, release_heap, settle_heap
    from streams.topics import DEADLETTER

    device = torch.device(args["device"])
    if args["model"] == "default":
        from socratext.pipeline import DEFAULT_MODEL_DIR

        # as served: combined with the rules when its labels.json says so (the rules run on every page)
        extractor = LayoutModelExtractor.from_pretrained(DEFAULT_MODEL_DIR, device=str(device),
                                                         batch_size=args["model_batch"])
    else:
        extractor = random_layoutlmv2_extractor(args["model"], device, args["model_batch"])
    threads = args["threads"]
    if args["torch_threads"]:
        torch.set_num_threads(args["torch_threads"])
    elif device.type == "cpu":  # the cores shared out among the batches running at once
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // (args["procs"] * threads)))
    deps = ExtractDeps(Settings(), extractor)
    raws: list[bytes] = args["raws"]
    sb = args["stage_batch"]
    batches = [raws[i:i + sb] for i in range(0, len(raws), sb)]
    out = process_extract_batch(batches[0], deps)  # warm-up: kernels, allocator, cudnn plans
    bad = [o for o in out if o.topic == DEADLETTER]
    settle_heap()  # as a worker does once its model is loaded

    def one(batch: list[bytes]) -> int:
        clear_caches()  # the rounds repeat the same receipts: no line's amounts read from an earlier round
        return len(process_extract_batch(batch, deps))

    barrier.wait()
    t0 = time.perf_counter()
    # `threads` batches at once, as `extract_concurrency` agents on one model do in a worker
    with ThreadPoolExecutor(threads) as pool:
        n = sum(pool.map(one, batches * args["rounds"]))
    _sync(device)
    release_heap()
    results.put({"start": t0, "end": time.perf_counter(), "receipts": args["rounds"] * len(raws),
                 "events_out": n, "deadletters": len(bad)})


def measure_stage(raws: list[bytes], model: str, procs: int, stage_batch: int, model_batch: int, rounds: int,
                  device: str, threads: int = 1, torch_threads: int = 0) -> dict[str, Any]:
    """Aggregate receipts/s of `procs` extraction worker processes, each with its own copy of the events
    (as if each consumed its own partition), all started together after their warm-up."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(procs + 1)
    results = ctx.Queue()
    args = {"raws": raws, "model": model, "procs": procs, "stage_batch": stage_batch,
            "model_batch": model_batch, "rounds": rounds, "device": device, "threads": threads,
            "torch_threads": torch_threads}
    ps = [ctx.Process(target=_stage_worker, args=(args, barrier, results)) for _ in range(procs)]
    for p in ps:
        p.start()
    barrier.wait(timeout=600)
    got = [results.get(timeout=900) for _ in ps]
    for p in ps:
        p.join()
    start = min(g["start"] for g in got)
    end = max(g["end"] for g in got)
    receipts = sum(g["receipts"] for g in got)
    return {"part": "stage", "model": model, "procs": procs, "threads": threads,
            "torch_threads": torch_threads or "auto", "stage_batch": stage_batch,
            "model_batch": model_batch, "receipts": receipts, "wall_s": round(end - start, 3),
            "rps": round(receipts / (end - start), 1),
            "events_out": sum(g["events_out"] for g in got),
            "deadletters_in_warmup": sum(g["deadletters"] for g in got)}


@contextmanager
def mps_daemon(enabled: bool, device: Any) -> Iterator[bool]:
    """CUDA MPS for the stage's worker processes, started for the run in a private directory and stopped
    after it. Without MPS, processes sharing a GPU get time slices of it one after the other; under MPS
    their kernels share the GPU at once, through one server context. The workers are spawned after this
    starts and inherit CUDA_MPS_PIPE_DIRECTORY, which makes them its clients; nothing of the GPU's own
    settings changes (compute mode, MIG)."""
    if not enabled:
        yield False
        return
    if device.type != "cuda":
        raise SystemExit("--mps needs a CUDA device")
    exe = shutil.which("nvidia-cuda-mps-control")
    if exe is None:
        raise SystemExit("--mps: nvidia-cuda-mps-control is not on PATH (it comes with the NVIDIA driver)")
    root = Path(tempfile.mkdtemp(prefix="socratext-mps-"))
    env = {"CUDA_MPS_PIPE_DIRECTORY": str(root / "pipe"), "CUDA_MPS_LOG_DIRECTORY": str(root / "log")}
    for d in env.values():
        Path(d).mkdir()
    subprocess.run([exe, "-d"], env={**os.environ, **env}, check=True, timeout=30)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield True
    finally:
        subprocess.run([exe], input="quit\n", text=True, env={**os.environ, **env}, timeout=60, check=False)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --- agreement -------------------------------------------------------------------------------------------
def agreement(raws: list[bytes]) -> dict[str, Any]:
    """The default model on CPU (fp32) vs the GPU (bf16 autocast) on the same pages."""
    import numpy as np

    from socratext.model.extractor import LayoutModelExtractor
    from socratext.pipeline import DEFAULT_MODEL_DIR
    from streams.events import parse_ocr

    pages = [parse_ocr(r).page for r in raws]
    cpu = LayoutModelExtractor.from_pretrained(DEFAULT_MODEL_DIR, device="cpu", combine=False)
    gpu = LayoutModelExtractor.from_pretrained(DEFAULT_MODEL_DIR, device="cuda", combine=False)
    pc, pg = cpu.word_probabilities(pages), gpu.word_probabilities(pages)
    lc, lg = cpu.label(pages), gpu.label(pages)
    words = sum(len(x) for x in lc)
    same = sum(a.label == b.label for x, y in zip(lc, lg, strict=True) for a, b in zip(x, y, strict=True))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(pc, pg, strict=True) if len(a))
    return {"part": "agreement", "model": f"{cpu.name} {cpu.version}", "pages": len(pages), "words": words,
            "same_label": round(same / max(words, 1), 5), "max_abs_prob_diff": round(diff, 4)}


# --- main --------------------------------------------------------------------------------------------------
def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x]


def _machine(device: Any) -> dict[str, Any]:
    import torch

    m: dict[str, Any] = {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                         "loadavg": list(os.getloadavg())}
    if device.type == "cuda":
        m["gpu"] = torch.cuda.get_device_name(0)
        m["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return m


def run(opts: argparse.Namespace) -> dict[str, Any]:
    import torch

    from socratext.model.encoding import encode_page, image_tensor_v2, layout_boxes
    from streams.events import parse_ocr

    device = torch.device(opts.device if opts.device != "auto" else ("cuda" if torch.cuda.is_available()
                                                                        else "cpu"))
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed image size: pick conv algorithms once
    raws, images = read_events(Path(opts.events))
    if opts.receipts:
        raws, images = raws[: opts.receipts], images[: opts.receipts]
    tok = default_tokenizer()
    pad_id = tok.pad_token_id or 0
    windows, pixels = [], []
    for raw, img in zip(raws, images, strict=True):
        page = parse_ocr(raw).page
        for w in encode_page([x.text for x in page.words], layout_boxes(page), tok, page=0):
            windows.append(w)
            pixels.append(image_tensor_v2(img))
    reps = -(-opts.windows // len(windows))
    windows, pixels = (windows * reps)[: opts.windows], (pixels * reps)[: opts.windows]
    res: dict[str, Any] = {"config": opts.config, "device": str(device), "machine": _machine(device),
                           "receipts_in_file": len(raws),
                           "tokens_per_window": {"mean": round(statistics.mean(map(len, windows)), 1),
                                                 "max": max(map(len, windows))},
                           "rows": []}

    def save(row: dict[str, Any]) -> None:
        res["rows"].append(row)
        print(json.dumps(row), flush=True)
        write_json(opts.out, res, announce=False)  # after every row: a run cut short keeps its rows

    model = build_model(opts.config, len(tok), pad_id, device)
    res["params_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 1)
    # the serving path first (bf16 autocast, sorted batches), so that a run cut short still has the headline
    grid = [("bf16-autocast", "sorted"),
            *(("bf16-autocast", p) for p in opts.paddings.split(",") if p != "sorted"),
            *((p, "sorted") for p in opts.precisions.split(",") if p != "bf16-autocast")]
    if device.type == "cpu":  # the CPU has no fast half precision: one variant is enough to smoke-test
        grid = [g for g in grid if g[0] in ("fp32", "bf16-autocast")]

    def model_rows(variants: list[tuple[str, str]]) -> None:
        for precision, padding in variants:
            for size in _ints(opts.sizes):
                n = min(len(windows), max(size, opts.windows // 4)) if size == 1 else len(windows)
                save(measure_model(model, windows[:n], pixels[:n], size, precision, padding, pad_id, device,
                                   opts.repeats))

    parts = set(opts.parts.split(","))
    if "model" in parts:
        model_rows(grid[:1])
    model.cpu()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    with mps_daemon(opts.mps and "stage" in parts, device) as mps:
        for procs in _ints(opts.procs) if "stage" in parts else []:
            for model_name in (opts.config, "default") if opts.stage_default else (opts.config,):
                for threads in _ints(opts.threads):
                    row = measure_stage(raws, model_name, procs, opts.stage_batch, opts.model_batch,
                                        opts.rounds, str(device), threads, opts.torch_threads)
                    save({**row, "mps": mps})
    if device.type == "cuda" and "agree" in parts:
        save(agreement(raws))
    if "variants" in parts:
        model.to(device)
        model_rows(grid[1:])
    return res


def table(res: dict[str, Any]) -> str:
    where = res["machine"].get("gpu", res["device"])
    lines = [f"{res['config']} ({res.get('params_m')} M params) on {where}; "
             f"{res['tokens_per_window']['mean']} tokens per window on average"]
    for r in res["rows"]:
        if r["part"] == "model":
            lines.append(f"model  batch {r['batch']:>4}  {r['precision']:<14} {r['padding']:<8} "
                         f"{r['rps']:>9.1f} receipts/s  ({r['padded_tokens_per_window']} tokens/window)")
        elif r["part"] == "stage":
            lines.append(f"stage  {r['model']:<8} procs {r['procs']:>2} x {r.get('threads', 1)} at once"
                         f"{' (MPS)' if r.get('mps') else ''}  "
                         f"stage batch {r['stage_batch']:>4}  "
                         f"{r['rps']:>9.1f} receipts/s  ({r['receipts']} receipts in {r['wall_s']} s)")
        else:
            lines.append(f"agree  {r['model']}: {r['same_label']:.4%} of {r['words']} words same label on "
                         f"GPU as on CPU, max |Δp| {r['max_abs_prob_diff']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make-events", help="OCR synthetic receipts into an events file (needs Tesseract)")
    mk.add_argument("--n", type=int, default=128)
    mk.add_argument("--seed", type=int, default=50_000)
    mk.add_argument("--out", default=".devcarry/events.jsonl")
    mk.add_argument("--no-page-image", dest="page_image", action="store_false",
                    help="events without the page image (SOCRATEXT_OCR_EVENT_PAGE_IMAGE=false)")
    mk.add_argument("--no-rule-labels", dest="rule_labels", action="store_false",
                    help="events without the rules' labels (SOCRATEXT_OCR_EVENT_RULE_LABELS=false)")
    rn = sub.add_parser("run", help="measure the model and the extraction stage")
    rn.add_argument("--events", default=".devcarry/events.jsonl")
    rn.add_argument("--receipts", type=int, default=0, help="use only the first N receipts of the file")
    rn.add_argument("--config", choices=("base", "small", "tiny"), default="base")
    rn.add_argument("--device", default="auto")
    rn.add_argument("--sizes", default="1,16,64,256")
    rn.add_argument("--precisions", default=",".join(PRECISIONS))
    rn.add_argument("--paddings", default=",".join(PADDINGS))
    rn.add_argument("--windows", type=int, default=512, help="windows per model measurement")
    rn.add_argument("--repeats", type=int, default=2)
    rn.add_argument("--procs", default="1,4,8")
    rn.add_argument("--stage-batch", type=int, default=128)
    rn.add_argument("--model-batch", type=int, default=64)
    rn.add_argument("--rounds", type=int, default=2)
    rn.add_argument("--threads", default="1",
                    help="batches at once per worker process (extract_concurrency), e.g. 1,2")
    rn.add_argument("--mps", action="store_true",
                    help="run the stage's worker processes under CUDA MPS (started and stopped here)")
    rn.add_argument("--torch-threads", type=int, default=0,
                    help="intra-op threads per process (0: 1 on a GPU, the cores shared out on a CPU)")
    rn.add_argument("--parts", default="model,stage,agree,variants",
                    help="model: the serving precision and padding; stage; agree: CPU/GPU agreement; "
                         "variants: the other precisions and paddings")
    rn.add_argument("--stage-default", action="store_true", help="also time the stage with the default model")
    rn.add_argument("--out", default=str(REPO_ROOT / "bench" / "results" / "gpu.json"))
    opts = ap.parse_args(argv)
    if opts.cmd == "make-events":
        make_events(opts.n, opts.seed, Path(opts.out), opts.page_image, opts.rule_labels)
        return
    res = run(opts)
    print(table(res))
    write_json(opts.out, res)


if __name__ == "__main__":
    main()
