"""OCR benchmark on real receipts: word recall and seconds per image for each preprocessing choice.

Ground truth is SROIE's own line transcriptions (`box/NNN.csv`, the text after the 8 coordinates).
Word recall = |GT tokens ∩ OCR tokens| / |GT tokens| on multisets of whitespace-split, lower-cased
tokens (order-free, so segmentation differences between engines do not count as errors); precision
is the same intersection over the OCR tokens. Images are an evenly spaced sample of the *training*
part of the fixed split (sorted stems, first 80 %), so choosing defaults here never looks at held-out data.

    python -m bench.bench_ocr [--n 40] [--out bench/results/ocr.json] [--configs raw,gray-psm4,...]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from bench.report import write_json
from socratext.imaging import load_image_file
from socratext.ocr.preprocess import preprocess_with_info
from socratext.ocr.tesseract import TesseractOcr
from socratext.settings import REPO_ROOT, Settings
from training.datasets.common import evenly_spaced

SROIE = REPO_ROOT.parent / "shared" / "data" / "sroie"


@dataclass(frozen=True)
class Config:
    name: str
    psm: int
    gray: bool = True  # False: hand Tesseract the decoded RGB image untouched
    max_side: int = 0  # 0: keep the size
    max_upscale: float = 1.0
    min_short_side: int = 0  # downscaling stops at this short side (0: plain long-side scaling)
    deskew: bool = False
    extra: str = ""  # more Tesseract command-line config
    tilt: float = 0.0  # rotate the input first (degrees), to mimic a hand-held shot


CONFIGS = [
    Config("raw-psm3", psm=3, gray=False),
    Config("gray-psm3", psm=3),
    Config("gray-psm4", psm=4),
    Config("gray-psm6", psm=6),
    Config("gray-psm11", psm=11),
    Config("gray-1200-psm4", psm=4, max_side=1200, max_upscale=1.0),
    Config("gray-1800-psm4", psm=4, max_side=1800, max_upscale=1.0),
    Config("gray-1800-up1.5-psm4", psm=4, max_side=1800, max_upscale=1.5),
    Config("gray-2400-up2-psm4", psm=4, max_side=2400, max_upscale=2.0),
    Config("gray-1800-up1.5-deskew-psm4", psm=4, max_side=1800, max_upscale=1.5, deskew=True),
    Config("gray-1800-up1.5-psm6", psm=6, max_side=1800, max_upscale=1.5),
    Config("gray-1800-up1.5-deskew-psm6", psm=6, max_side=1800, max_upscale=1.5, deskew=True),
    Config("tilt3-gray-1800-up1.5-psm6", psm=6, max_side=1800, max_upscale=1.5, tilt=3.0),
    Config("tilt3-gray-1800-up1.5-deskew-psm6", psm=6, max_side=1800, max_upscale=1.5, deskew=True, tilt=3.0),
    Config("gray-1800-up1.5-psm6-sauvola", psm=6, max_side=1800, max_upscale=1.5,
           extra="-c thresholding_method=2"),
    Config("gray-1800-up1.5-short1000-deskew-psm6", psm=6, max_side=1800, max_upscale=1.5,
           min_short_side=1000, deskew=True),
    Config("default:gray-1800-up1.5-short600-deskew-psm6", psm=6, max_side=1800, max_upscale=1.5,
           min_short_side=600, deskew=True),
    Config("gray-1800-up1.5-psm6-adaptive-otsu", psm=6, max_side=1800, max_upscale=1.5,
           extra="-c thresholding_method=1"),
]


def gt_tokens(csv_path: Path) -> list[str]:
    """Whitespace tokens of SROIE's line transcriptions (text may itself contain commas)."""
    tokens: list[str] = []
    for line in csv_path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split(",", 8)
        if len(parts) == 9:
            tokens.extend(parts[8].split())
    return tokens


def token_match(gt: list[str], ocr: list[str]) -> tuple[int, int, int]:
    """(matched, n_gt, n_ocr) on case-insensitive multisets."""
    g = Counter(t.lower() for t in gt)
    o = Counter(t.lower() for t in ocr)
    return sum((g & o).values()), sum(g.values()), sum(o.values())


def alnum_tokens(tokens: list[str]) -> list[str]:
    """Tokens with punctuation stripped (and dropped when nothing is left): a lenient second view, since
    Tesseract often splits "Date:" into "Date" ":" where SROIE's transcription keeps one token."""
    out = []
    for t in tokens:
        t = "".join(ch for ch in t if ch.isalnum())
        if t:
            out.append(t)
    return out


def word_recall(gt: list[str], ocr: list[str]) -> float:
    matched, n_gt, _ = token_match(gt, ocr)
    return matched / n_gt if n_gt else 1.0


def sample_stems(root: Path, n: int) -> list[str]:
    """`n` evenly spaced stems of the training part (sorted stems, index < int(0.8 * total))."""
    stems = sorted(p.stem for p in (root / "img").glob("*.jpg") if (root / "box" / f"{p.stem}.csv").exists())
    return evenly_spaced(stems[: int(0.8 * len(stems))], n)


@dataclass
class Tally:
    """Running totals of one config over the images."""

    matched: int = 0
    n_gt: int = 0
    n_ocr: int = 0
    matched_alnum: int = 0
    n_gt_alnum: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    preprocess_s: float = 0.0
    n: int = 0


def _child_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_one(cfg: Config, img: Image.Image, gt: list[str], languages: str, tally: Tally) -> float:
    """OCR one image under `cfg`, add to `tally`, return the image's recall.

    CPU seconds (ours for the preprocessing + Tesseract's, a child process) are counted besides wall
    time, because on a shared machine wall time mostly measures the neighbours.
    """
    settings = Settings(ocr_max_side=cfg.max_side, ocr_deskew=cfg.deskew)
    ocr = TesseractOcr(languages=languages, psm=cfg.psm, preprocess=False, settings=settings,
                       extra_config=cfg.extra)
    if cfg.tilt:
        img = img.rotate(cfg.tilt, resample=Image.Resampling.BICUBIC, expand=True, fillcolor="white")
    t0, c0, p0 = time.perf_counter(), _child_cpu(), time.process_time()
    seen = (preprocess_with_info(img, settings, max_side=cfg.max_side, max_upscale=cfg.max_upscale,
                                 min_short_side=cfg.min_short_side, deskew_enabled=cfg.deskew)[0]
            if cfg.gray else img)
    t1 = time.perf_counter()
    page = ocr.read(seen)
    t2, c2, p2 = time.perf_counter(), _child_cpu(), time.process_time()
    tally.preprocess_s += t1 - t0
    tally.wall_s += t2 - t0
    tally.cpu_s += (c2 - c0) + (p2 - p0)
    tally.n += 1
    words = [w.text for w in page.words]
    m, g, o = token_match(gt, words)
    ma, ga, _ = token_match(alnum_tokens(gt), alnum_tokens(words))
    tally.matched += m
    tally.n_gt += g
    tally.n_ocr += o
    tally.matched_alnum += ma
    tally.n_gt_alnum += ga
    return m / g if g else 1.0


def summarize(cfg: Config, t: Tally, per_image: dict[str, float]) -> dict:
    n = max(t.n, 1)
    return {**asdict(cfg), "n_images": t.n, "recall": round(t.matched / max(t.n_gt, 1), 4),
            "precision": round(t.matched / max(t.n_ocr, 1), 4),
            "recall_alnum": round(t.matched_alnum / max(t.n_gt_alnum, 1), 4),
            "s_per_image": round(t.wall_s / n, 3), "cpu_s_per_image": round(t.cpu_s / n, 3),
            "preprocess_s_per_image": round(t.preprocess_s / n, 3),
            "per_image_recall": {k: round(v, 4) for k, v in per_image.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=40, help="number of SROIE training images")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "ocr.json")
    ap.add_argument("--data", type=Path, default=SROIE)
    ap.add_argument("--languages", default="fra+eng")
    ap.add_argument("--configs", default="", help="comma-separated config names (default: all)")
    args = ap.parse_args(argv)

    if not (args.data / "img").is_dir():
        print(f"no SROIE data at {args.data}: nothing to measure")
        return 1
    wanted = [c for c in CONFIGS if not args.configs or c.name in args.configs.split(",")]
    stems = sample_stems(args.data, args.n)
    images = {s: load_image_file(args.data / "img" / f"{s}.jpg")[0] for s in stems}
    gts = {s: gt_tokens(args.data / "box" / f"{s}.csv") for s in stems}

    print(f"{len(stems)} SROIE images, tesseract {TesseractOcr().version}, lang={args.languages}")
    tallies = {c.name: Tally() for c in wanted}
    per_image: dict[str, dict[str, float]] = {c.name: {} for c in wanted}
    # Images outside, configs inside (in a rotating order): load spikes on a shared machine then hit
    # every config alike instead of whichever happened to run at that moment.
    for i, stem in enumerate(stems):
        for k in range(len(wanted)):
            cfg = wanted[(i + k) % len(wanted)]
            per_image[cfg.name][stem] = run_one(cfg, images[stem], gts[stem], args.languages,
                                                tallies[cfg.name])
        print(f"  {i + 1}/{len(stems)} images", flush=True)
    results = [summarize(c, tallies[c.name], per_image[c.name]) for c in wanted]
    print(f"{'config':32s} " + " ".join(f"{h:>7s}" for h in ("recall", "prec", "alnum", "wall s", "cpu s",
                                                                "pre s")))
    for r in results:
        print(f"{r['name']:32s} {r['recall']:7.4f} {r['precision']:7.4f} {r['recall_alnum']:7.4f} "
              f"{r['s_per_image']:7.3f} {r['cpu_s_per_image']:7.3f} {r['preprocess_s_per_image']:7.3f}")

    write_json(args.out, {
        "dataset": "sroie (train part, evenly spaced sample)", "n_images": len(stems), "stems": stems,
        "languages": args.languages, "tesseract": TesseractOcr().version,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "omp_thread_limit": os.environ.get("OMP_THREAD_LIMIT"), "results": results,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
