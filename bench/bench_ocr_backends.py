"""OCR engines and ways of running them, on real receipts: time per receipt and word recall, as ratios.

    .venv/bin/python -m bench.bench_ocr_backends --n 20 [--chunk 4] [--variants pytesseract,tesserocr,...]
        [--out bench/results/ocr_backends.json]

Each variant reads the same SROIE training images (decode → `preprocess` → OCR, the OCR stage without
its second pass) with the default settings (fra+eng, psm 6, long side 1800 px) unless it says otherwise:

- `pytesseract`: one `tesseract` program run per image (the baseline, what the pipeline did);
- `tesserocr`: Tesseract's C++ API in this process, models loaded once (`socratext.ocr.tesserocr_backend`);
- `tesserocr-1400`, `tesserocr-psm4`: the same with a smaller working size / another page segmentation;
- `pytesseract-procs2`, `tesserocr-procs2`: a pool of 2 worker processes, each doing decode+preprocess+OCR;
- `tesserocr-threads2`: 2 threads in this process sharing one engine pool (the streaming worker's way);
- `ppocr`, `ppocr-threads2`, `ppocr-procs2`: PP-OCRv6 small through rapidocr/onnxruntime
  (`socratext.ocr.ppocr_backend`, one intra-op thread per engine), its own preprocessing (no upscale);
  `ppocr-2threads`: one engine with 2 intra-op threads (onnxruntime parallelising one receipt instead);
  `ppocr-float736-rb6`: the engine before its int8 detector (rapidocr's float detector on a page enlarged
  to a 736 px short side, 6 recognised lines per call), `ppocr-float`, `ppocr-rb6`, `ppocr-det736`: one
  of those three choices undone at a time; `ppocr-rec192`: short text lines padded to 192 px before
  recognition instead of rapidocr's 320 (`ppocr_rec_min_width`); `ppocr-det-tesseract-lines`: PP-OCR's
  detector, then Tesseract on each detected line (`PpDetTesseractLines`, not a product engine).

`peak RSS MB` is the largest resident size of a worker process of the `-procs2` variants (one engine each,
after the run): what one OCR process of that engine costs in memory.

Images go in chunks of `--chunk`; every variant does every chunk, in a rotating order, so a load spike on
this shared machine hits all of them alike. `wall s/rec` is the chunk's wall time over its images (for
the pools: throughput, not one receipt's latency), `cpu s/rec` the CPU of the work itself (the
`tesseract` child's included). Ratios are against `pytesseract` in the same run. Recall and precision
are bench_ocr's multiset word measures against SROIE's transcriptions.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench.bench_ocr import SROIE, gt_tokens, sample_stems, token_match
from bench.report import write_json
from socratext.settings import REPO_ROOT
from training.datasets.synthetic import HELD_OUT_SEED as SYNTH_SEED  # the held-out ones: never trained on


@dataclass(frozen=True)
class Variant:
    name: str
    backend: str
    workers: int = 1
    pool: str = ""  # "", "threads" or "procs"
    psm: int = 6
    max_side: int = 1800
    config: str = ""  # extra tesseract variables, `-c name=value ...`; "" = Tesseract's own defaults
    languages: str = ""  # "" = the settings' (fra+eng)
    intra_op_threads: int = 1  # PP-OCR: onnxruntime threads per engine
    ppocr: tuple[tuple[str, object], ...] = ()  # PP-OCR: other settings, (name, value) pairs


RAPIDOCR_SETTINGS = (("ppocr_detector", "float"), ("ppocr_det_min_side", 736), ("ppocr_rec_batch", 6),
                     ("ppocr_rec_min_width", 320))
"""What `ppocr` was before the int8 detector: rapidocr's float detector on a page enlarged to a 736 px
short side, recognition 6 lines per call, each padded to 320 px: rapidocr's own settings."""

HYBRID = "ppocr-det-tesseract-lines"  # PP-OCR's detector, Tesseract on each line (`PpDetTesseractLines`)

VARIANTS = [
    Variant("pytesseract", "pytesseract"),
    Variant("tesserocr", "tesserocr"),
    Variant("tesserocr-1400", "tesserocr", max_side=1400),
    Variant("tesserocr-psm4", "tesserocr", psm=4),
    # Tesseract 5 re-reads every line it is unsure of as inverted (white on black) text; receipts have none
    Variant("tesserocr-noinvert", "tesserocr", config="-c tessedit_do_invert=0"),
    # one language model instead of two: Tesseract re-reads the words it is unsure of with the second one
    Variant("tesserocr-noinvert-fra", "tesserocr", config="-c tessedit_do_invert=0", languages="fra"),
    Variant("tesserocr-noinvert-eng", "tesserocr", config="-c tessedit_do_invert=0", languages="eng"),
    Variant("pytesseract-procs2", "pytesseract", workers=2, pool="procs"),
    Variant("tesserocr-procs2", "tesserocr", workers=2, pool="procs"),
    Variant("tesserocr-threads2", "tesserocr", workers=2, pool="threads"),
    Variant("ppocr", "ppocr"),
    Variant("ppocr-float736-rb6", "ppocr", ppocr=RAPIDOCR_SETTINGS),
    Variant("ppocr-float736-rb6-procs2", "ppocr", workers=2, pool="procs", ppocr=RAPIDOCR_SETTINGS),
    Variant("ppocr-float", "ppocr", ppocr=(("ppocr_detector", "float"),)),
    Variant("ppocr-rb6", "ppocr", ppocr=(("ppocr_rec_batch", 6),)),
    Variant("ppocr-det736", "ppocr", ppocr=(("ppocr_det_min_side", 736),)),
    # short text lines padded to 192 px before recognition instead of rapidocr's 320 (less CPU, fewer
    # fields right on SROIE's training split: docs/accuracy.md)
    Variant("ppocr-rec192", "ppocr", ppocr=(("ppocr_rec_min_width", 192),)),
    # the suggested hybrid: PP-OCR's detector finds the lines, Tesseract reads each one
    Variant(HYBRID, HYBRID),
    Variant("ppocr-1280", "ppocr", max_side=1280),  # a smaller page: detection's cost goes with its area
    Variant("ppocr-1024", "ppocr", max_side=1024),
    Variant("ppocr-2threads", "ppocr", intra_op_threads=2),
    Variant("ppocr-threads2", "ppocr", workers=2, pool="threads"),
    Variant("ppocr-procs2", "ppocr", workers=2, pool="procs"),
]
ENGINE_CLASS = {"tesserocr": "TesserocrOcr", "pytesseract": "TesseractOcr", "ppocr": "PpOcr",
                HYBRID: "PpDetTesseractLines"}


class PpDetTesseractLines:
    """PP-OCR's detector finds the text lines, Tesseract's LSTM reads each one as a single line (page
    segmentation 7, the fra+eng models): the hybrid issue 21 proposed, to keep PP-OCR's layout for
    Tesseract's CPU. Measured here, not shipped (docs/accuracy.md: fewer words than Tesseract alone)."""

    def __init__(self, settings: object) -> None:
        import tesserocr

        from socratext.ocr.ppocr_backend import PpOcr
        from socratext.ocr.tesserocr_backend import tessdata_dir

        self.pp = PpOcr(settings=settings)  # type: ignore[arg-type]
        self.detector = self.pp._new_engine()
        self.api = tesserocr.PyTessBaseAPI(path=str(tessdata_dir()).rstrip("/") + "/",
                                           lang=self.pp.languages, psm=7, oem=1)

    def __call__(self, images: list) -> list:
        import numpy as np

        from socratext.document import OcrPage, Word
        from socratext.ocr.ppocr_backend import quad_to_box

        pages = []
        for img in images:
            prep = self.pp.prepare_with_info(img)[0]
            bgr = np.ascontiguousarray(np.asarray(prep.convert("RGB"))[:, :, ::-1])
            found = self.detector(bgr, use_rec=False, use_cls=False).boxes
            gray, words = prep.convert("L"), []
            for quad in found if found is not None else ():
                x0, y0, x1, y1 = quad_to_box(quad, prep.width, prep.height)
                pad = max(2, (y1 - y0) // 6)  # Tesseract wants a margin around the ink
                self.api.SetImage(gray.crop((max(0, x0 - pad), max(0, y0 - pad),
                                             min(prep.width, x1 + pad), min(prep.height, y1 + pad))))
                self.api.Recognize()
                words += [Word(t, (x0, y0, x1, y1), 0.5) for t in self.api.GetUTF8Text().split()]
            pages.append(OcrPage(words, prep.width, prep.height))
        return pages

_ENGINES: dict[tuple[object, ...], object] = {}  # per process: engines stay loaded between calls


def _engine(v: Variant) -> object:
    from socratext.ocr import make_ocr
    from socratext.settings import Settings

    key = (v.backend, v.psm, v.max_side, v.config, v.languages, v.intra_op_threads, v.ppocr)
    if key not in _ENGINES:
        hybrid = v.backend == HYBRID
        settings = Settings(ocr_max_side=v.max_side, ppocr_max_side=v.max_side,
                            ocr_backend="ppocr" if hybrid else v.backend,
                            ocr_intra_op_threads=v.intra_op_threads, **dict(v.ppocr))
        ocr = (PpDetTesseractLines(settings) if hybrid else
               make_ocr(settings, psm=v.psm, preprocess=True, extra_config=v.config,
                        languages=v.languages or None))
        if type(ocr).__name__ != ENGINE_CLASS[v.backend]:
            raise SystemExit(f"{v.backend} is not usable here (is tesserocr installed?)")
        _ENGINES[key] = ocr
    return _ENGINES[key]


def ocr_file(v: Variant, path: str) -> tuple[list[str], float]:
    """Decode + preprocess + OCR one file; its words and the CPU seconds it took (this thread, plus the
    `tesseract` child when the backend runs one — exact as long as one file per process runs at a time)."""
    from socratext.imaging import load_image_file

    engine = _engine(v)
    c0 = time.thread_time()
    k0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    img = load_image_file(Path(path))[0]
    page = engine([img])[0]  # type: ignore[operator]
    k1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.thread_time() - c0 + (k1.ru_utime - k0.ru_utime) + (k1.ru_stime - k0.ru_stime)
    return [w.text for w in page.words], cpu


def _warm(v: Variant, path: str) -> None:
    ocr_file(v, path)


def _peak_rss_mb(_: int) -> float:
    """This process's peak resident set size (Linux reports it in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Tally:
    matched: int = 0
    n_gt: int = 0
    n_ocr: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    n: int = 0
    chunks: list[float] = field(default_factory=list)  # wall s per receipt, per chunk


def run_chunk(v: Variant, paths: list[str], pool: Executor | None) -> tuple[list[list[str]], float, float]:
    t0 = time.perf_counter()
    if pool is None:
        # The whole process's CPU: an engine with several intra-op threads works on threads of its own,
        # which the per-thread clock of `ocr_file` does not see.
        c0, k0 = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
        results = [ocr_file(v, p) for p in paths]
        k1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = time.process_time() - c0 + (k1.ru_utime - k0.ru_utime) + (k1.ru_stime - k0.ru_stime)
        return [r[0] for r in results], time.perf_counter() - t0, cpu
    results = list(pool.map(ocr_file, [v] * len(paths), paths))
    wall = time.perf_counter() - t0
    return [r[0] for r in results], wall, sum(r[1] for r in results)


def synthetic_sample(n: int, out_dir: Path) -> tuple[list[str], list[str], list[list[str]]]:
    """`n` synthetic French receipts written as JPEGs (as a phone or scanner would send them): their
    names, paths and words (the generator's own text, the truth the recall is measured against)."""
    from training.synth.generator import generate_receipt

    stems, paths, gts = [], [], []
    for i in range(n):
        r = generate_receipt(SYNTH_SEED + i, degrade=True)
        path = out_dir / f"synth-{SYNTH_SEED + i}.jpg"
        r.image.convert("RGB").save(path, "JPEG", quality=85)
        stems.append(path.stem)
        paths.append(str(path))
        gts.append([w.text for w in r.words])
    return stems, paths, gts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20, help="number of SROIE training images")
    ap.add_argument("--chunk", type=int, default=4, help="images per interleaving step")
    ap.add_argument("--variants", default="", help="comma-separated names (default: all)")
    ap.add_argument("--data", type=Path, default=SROIE)
    ap.add_argument("--dataset", choices=("sroie", "synthetic"), default="sroie",
                    help="synthetic: French receipts from training.synth (degraded JPEGs; their own words "
                         "as the truth), since no French receipt images are at hand")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "ocr_backends.json")
    args = ap.parse_args(argv)
    names = [s for s in args.variants.split(",") if s]
    wanted = [v for v in VARIANTS if not names or v.name in names]
    if "pytesseract" not in [v.name for v in wanted]:
        wanted.insert(0, VARIANTS[0])  # the baseline the ratios refer to
    if args.dataset == "synthetic":
        tmp = tempfile.TemporaryDirectory(prefix="socratext-ocr-bench-")
        stems, paths, gts = synthetic_sample(args.n, Path(tmp.name))
        dataset = f"synthetic French receipts (training.synth, seeds from {SYNTH_SEED}, degraded, JPEG 85)"
    else:
        if not (args.data / "img").is_dir():
            print(f"no SROIE data at {args.data}: nothing to measure")
            return 1
        stems = sample_stems(args.data, args.n)
        paths = [str(args.data / "img" / f"{s}.jpg") for s in stems]
        gts = [gt_tokens(args.data / "box" / f"{s}.csv") for s in stems]
        dataset = "sroie (train part, evenly spaced sample)"
    load0 = os.getloadavg()

    pools: dict[str, Executor] = {}
    for v in wanted:  # start the pools and load their engines before anything is timed
        if v.pool:
            pools[v.name] = (ProcessPoolExecutor(v.workers, mp_context=multiprocessing.get_context("spawn"))
                             if v.pool == "procs" else ThreadPoolExecutor(v.workers))
            list(pools[v.name].map(_warm, [v] * v.workers, paths[: v.workers]))
        else:
            _warm(v, paths[0])
    tallies = {v.name: Tally() for v in wanted}
    chunks = [list(range(i, min(i + args.chunk, len(paths)))) for i in range(0, len(paths), args.chunk)]
    try:
        for c, idx in enumerate(chunks):
            for k in range(len(wanted)):
                v = wanted[(c + k) % len(wanted)]
                words, wall, cpu = run_chunk(v, [paths[i] for i in idx], pools.get(v.name))
                t = tallies[v.name]
                for i, w in zip(idx, words, strict=True):
                    m, g, o = token_match(gts[i], w)
                    t.matched, t.n_gt, t.n_ocr = t.matched + m, t.n_gt + g, t.n_ocr + o
                t.wall_s, t.cpu_s, t.n = t.wall_s + wall, t.cpu_s + cpu, t.n + len(idx)
                t.chunks.append(wall / len(idx))
            done = min((c + 1) * args.chunk, len(paths))
            print(f"  {done}/{len(paths)} images  load {os.getloadavg()[0]:.2f}", flush=True)
        peak_rss = {name: round(max(p.map(_peak_rss_mb, range(4))), 1)
                    for name, p in pools.items() if isinstance(p, ProcessPoolExecutor)}
    finally:
        for p in pools.values():
            p.shutdown()
    base = tallies["pytesseract"]
    results = []
    for v in wanted:
        t = tallies[v.name]
        results.append({
            "name": v.name, "backend": v.backend, "workers": v.workers, "pool": v.pool or "none",
            "psm": v.psm, "max_side": v.max_side, "languages": v.languages or "fra+eng", "n_images": t.n,
            "recall": round(t.matched / max(t.n_gt, 1), 4),
            "precision": round(t.matched / max(t.n_ocr, 1), 4),
            "wall_s_per_receipt": round(t.wall_s / max(t.n, 1), 3),
            "cpu_s_per_receipt": round(t.cpu_s / max(t.n, 1), 3),
            "speedup_wall_vs_pytesseract": round(base.wall_s / t.wall_s, 2) if t.wall_s else None,
            "speedup_cpu_vs_pytesseract": round(base.cpu_s / t.cpu_s, 2) if t.cpu_s else None,
            "recall_minus_pytesseract": round(t.matched / max(t.n_gt, 1) - base.matched / max(base.n_gt, 1),
                                              4),
            "peak_rss_mb_per_process": peak_rss.get(v.name),
        })
    from socratext.ocr import TesseractOcr

    try:
        from socratext.ocr.tesserocr_backend import TesserocrOcr

        tesserocr_version = TesserocrOcr(preprocess=False).version
    except Exception as exc:  # noqa: BLE001 - reported, not fatal (pytesseract variants still ran)
        tesserocr_version = f"unavailable: {exc}"
    out = {"dataset": dataset, "n_images": len(stems), "stems": stems,
           "chunk": args.chunk, "tesseract_program": TesseractOcr().version,
           "tesserocr_lib": tesserocr_version,
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                       "loadavg_start": [round(x, 2) for x in load0],
                       "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
           "omp_thread_limit": os.environ.get("OMP_THREAD_LIMIT"), "results": results}
    load = out["machine"]
    print(f"{len(stems)} {args.dataset} images, {os.cpu_count()} CPUs, load {load['loadavg_start'][0]} → "
          f"{load['loadavg_end'][0]}")
    print(f"{'variant':22s} {'recall':>7s} {'prec':>7s} {'wall s/rec':>10s} {'cpu s/rec':>9s} "
          f"{'x wall':>7s} {'x cpu':>6s} {'peak RSS MB':>11s}")
    for r in results:
        print(f"{r['name']:22s} {r['recall']:7.4f} {r['precision']:7.4f} {r['wall_s_per_receipt']:10.3f} "
              f"{r['cpu_s_per_receipt']:9.3f} {r['speedup_wall_vs_pytesseract']!s:>7s} "
              f"{r['speedup_cpu_vs_pytesseract']!s:>6s} {r['peak_rss_mb_per_process']!s:>11s}")
    write_json(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
