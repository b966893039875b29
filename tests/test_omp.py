"""OpenMP thread limit at the root: every entry point runs Tesseract (and torch) with one OpenMP thread in the
environment a user has — no `OMP_THREAD_LIMIT` exported — as `socratext/__init__.py` promises.

Deterministic, not timed: a subprocess started without the variable imports an entry point first (as its
users do), OCRs a bundled sample with the in-process engine (tesserocr: libtesseract's OpenMP runs in this
process) and runs one parallel torch operation, then reports the variable and its own thread count. An
OpenMP runtime keeps the threads of its team alive after a parallel region, so the thread count shows the
team size; the run with the variable exported is the reference. Before the fix (the variable set in the OCR
engine's constructor, after `tesserocr` was imported) every plain run here had more threads than the
reference, and the OCR alone of sample_01 took 1.18 s of CPU instead of 0.39 s on the 2-core dev box.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from socratext.ocr import tesserocr_backend
from socratext.settings import REPO_ROOT

PROBE = r"""
import importlib, json, os, sys
importlib.import_module(sys.argv[1])  # the entry point, first, as `socratext ...` or `python -m ...` does
from PIL import Image
from socratext.ocr import make_ocr, preprocess
from socratext.settings import REPO_ROOT, Settings
settings = Settings(ocr_backend="tesserocr")
ocr = make_ocr(settings, preprocess=False)
assert type(ocr).__name__ == "TesserocrOcr", type(ocr)
ocr([preprocess(Image.open(REPO_ROOT / "socratext" / "samples" / "sample_01.jpg"), settings)])
try:
    import torch
except ImportError:
    pass
else:
    torch.set_num_threads(max(2, os.cpu_count() or 1))
    (torch.ones(4_000_000) * 2).exp().sum()  # one parallel region of at::parallel_for
print(json.dumps({"omp_thread_limit": os.environ.get("OMP_THREAD_LIMIT"),
                  "threads": len(os.listdir("/proc/self/task"))}))
"""

needs_tesserocr = pytest.mark.skipif(
    not tesserocr_backend.available() or tesserocr_backend.tessdata_dir() is None
    or not os.path.isdir("/proc/self/task"), reason="tesserocr, tessdata or /proc not available")


def probe(entry: str, omp_thread_limit: str | None) -> dict:
    """Run PROBE in a fresh interpreter whose environment has `OMP_THREAD_LIMIT` only when given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    if omp_thread_limit is not None:
        env["OMP_THREAD_LIMIT"] = omp_thread_limit
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run([sys.executable, "-c", PROBE, entry], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def exported() -> dict:
    """The reference: the variable exported, as every deployment file does."""
    return probe("socratext", "1")


@pytest.mark.slow
@needs_tesserocr
def test_an_explicit_limit_wins_and_the_probe_sees_openmp_threads(exported: dict) -> None:
    """The check is sensitive: an operator's larger limit is kept and shows up as more threads (so equal
    counts below mean one OpenMP thread, not a probe that cannot see OpenMP)."""
    wide = probe("socratext", "8")
    assert wide["omp_thread_limit"] == "8"
    assert wide["threads"] > exported["threads"], (wide, exported)


@pytest.mark.slow
@needs_tesserocr
@pytest.mark.parametrize("entry", ["socratext", "socratext.cli", "streams.worker", "training.train",
                                   "bench.bench_ocr"])
def test_a_plain_environment_gets_one_openmp_thread(entry: str, exported: dict) -> None:
    """CLI, worker, `python -m training.*` / `bench.*` and library use: one OpenMP thread without the
    variable exported. training.train imports torch before any socratext module, and torch's libgomp is the
    one libtesseract then uses: only the package's own import of socratext puts the limit before it."""
    plain = probe(entry, None)
    assert plain["omp_thread_limit"] == "1"
    assert plain["threads"] <= exported["threads"], (entry, plain, exported)
