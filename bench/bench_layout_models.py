"""Size and CPU forward time of the layout model configs (random weights: speed does not depend on them).

For each config: parameters, float32 weight size (what `save_pretrained` writes), and the median wall time
and process CPU time of one inference forward on 1 × `--tokens` tokens (+ the 224×224 image for
LayoutLMv2, and for LayoutLMv3 with vision) with `--threads` torch threads — the per-receipt cost of the
extractor when a receipt fits one 512-token window. The LayoutLMv2 visual backbone alone is timed too.
On a shared, busy machine wall time mostly measures the neighbours; the CPU time of a 1-thread run is the
contention-proof figure (an idle 2-core box takes about that divided by the 2-thread speed-up).
Targets for the CPU default: ≤ 150 ms per receipt on 2 cores, ≤ 50 MB of weights.

    python -m bench.bench_layout_models [--tokens 512] [--threads 2] [--repeats 5] [--vocab 4000]
        [--out bench/results/layout_models.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from transformers import LayoutLMv3ForTokenClassification

from bench.report import write_json
from socratext.model.layoutlmv2 import LayoutLMv2FreeForTokenClassification, small_layoutlmv2_config
from socratext.model.layoutlmv3 import small_layoutlmv3_config

REPO_ROOT = Path(__file__).resolve().parent.parent
NUM_LABELS = 41


def _inputs(tokens: int, vocab: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x0y0 = torch.randint(0, 900, (1, tokens, 2), generator=g)
    return {
        "input_ids": torch.randint(5, vocab, (1, tokens), generator=g),
        "bbox": torch.cat([x0y0, x0y0 + torch.randint(1, 100, (1, tokens, 2), generator=g)], -1),
        "attention_mask": torch.ones(1, tokens, dtype=torch.long),
    }


def _median_ms(fn, repeats: int) -> tuple[float, float]:
    """Median (wall ms, process CPU ms) of `fn()`; CPU time is the contention-proof figure on a busy box."""
    with torch.inference_mode():
        fn()  # warm-up (allocations, oneDNN kernel selection)
        wall, cpu = [], []
        for _ in range(repeats):
            w, c = time.perf_counter(), time.process_time()
            fn()
            wall.append((time.perf_counter() - w) * 1000)
            cpu.append((time.process_time() - c) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def _size(model: torch.nn.Module) -> tuple[int, float]:
    params = sum(p.numel() for p in model.parameters())
    nbytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return params, nbytes / 1e6


def run(tokens: int, threads: int, repeats: int, vocab: int) -> list[dict]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    inputs = _inputs(tokens, vocab)
    image = torch.rand(1, 3, 224, 224) * 255
    rows = []

    v2 = LayoutLMv2FreeForTokenClassification(small_layoutlmv2_config(vocab, NUM_LABELS)).eval()
    params, mb = _size(v2)
    visual = v2.layoutlmv2.visual
    forward = _median_ms(lambda m=v2: m(**inputs, image=image), repeats)
    visual_only = _median_ms(lambda: visual(image), repeats)
    rows.append({"model": "small_layoutlmv2", "params": params, "weights_mb": mb,
                 "backbone_params": sum(p.numel() for p in visual.parameters()),
                 "forward_ms": forward[0], "forward_cpu_ms": forward[1],
                 "visual_ms": visual_only[0], "visual_cpu_ms": visual_only[1]})
    del v2

    for name, visual_embed in (("small_layoutlmv3", True), ("small_layoutlmv3_text_only", False)):
        config = small_layoutlmv3_config(vocab, NUM_LABELS, visual=visual_embed)
        v3 = LayoutLMv3ForTokenClassification(config).eval()
        params, mb = _size(v3)
        extra = {"pixel_values": torch.randn(1, 3, 224, 224)} if visual_embed else {}
        forward = _median_ms(lambda v3=v3, extra=extra: v3(**inputs, **extra), repeats)
        rows.append({"model": name, "params": params, "weights_mb": mb,
                     "forward_ms": forward[0], "forward_cpu_ms": forward[1]})
        del v3
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--vocab", type=int, default=4000)
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "layout_models.json")
    args = ap.parse_args(argv)
    rows = run(args.tokens, args.threads, args.repeats, args.vocab)
    print(f"threads={args.threads} tokens={args.tokens} vocab={args.vocab} (median of {args.repeats})")
    print(f"{'model':<28}{'params':>11}{'MB fp32':>9}{'wall ms':>9}{'cpu ms':>8}{'visual wall/cpu ms':>20}")
    for r in rows:
        visual = f"{r['visual_ms']:.0f}/{r['visual_cpu_ms']:.0f}" if "visual_ms" in r else "-"
        print(f"{r['model']:<28}{r['params']:>11,}{r['weights_mb']:>9.1f}{r['forward_ms']:>9.0f}"
              f"{r['forward_cpu_ms']:>8.0f}{visual:>20}")
    write_json(args.out, {
        "tokens": args.tokens, "threads": args.threads, "repeats": args.repeats, "vocab": args.vocab,
        "torch": torch.__version__, "machine": platform.machine(), "processor": platform.processor(),
        "cpu_count": os.cpu_count(), "load_average_1min": os.getloadavg()[0],
        "rows": rows,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
