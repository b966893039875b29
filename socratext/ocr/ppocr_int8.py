"""PP-OCR's text detector quantised to 8-bit integers, built once from the wheel's network and cached.

Why: on the CPU the detector was half of PP-OCR's time per receipt (about 1.3 s of 2.4 s on SROIE scans,
one onnxruntime thread), and PP-OCR cost about five times Tesseract's CPU. A statically quantised copy
(int8 weights per output channel, uint8 activations with ranges calibrated on receipts, onnxruntime's
`QLinearConv` kernels) runs the same network about three times faster and finds the same words
(docs/accuracy.md, `bench/bench_ocr_backends.py`). The recogniser stays in floating point: quantising it
lost words for little time.

Nothing is downloaded and nothing binary is kept in the repository: the quantised network is derived from
the detector inside the `rapidocr` wheel, calibrated on the receipts bundled with the package
(`socratext/samples`, made by the project), and written to `settings.ppocr_model_cache` under a name that
holds the source network's digest and the recipe's version, so a new rapidocr wheel or a new recipe builds
a new file instead of reusing a stale one. Several processes starting at once build it once (a file lock);
`setup.sh` and the images build it ahead (`socratext ocr-models`), so a worker does not pay the build
(about 20 s on 2 cores) on its first receipt.

Building needs the `onnx` package (onnxruntime's quantisation tools read and write ONNX graphs with it),
which the `ppocr` extra installs. On a GPU the float network runs: onnxruntime's CUDA provider has no
int8 convolution, and the GPU does not need it.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

RECIPE = "qop-perchannel-minmax-v1"
"""Changes whenever the way the network is quantised or calibrated changes (it is part of the file name)."""

DETECTOR_FILE = "PP-OCRv6_det_small.onnx"
SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"


def wheel_detector() -> Path:
    """The float detection network shipped inside the rapidocr wheel."""
    import rapidocr

    return Path(rapidocr.__file__).resolve().parent / "models" / DETECTOR_FILE


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def cached_path(cache_dir: Path, source: Path) -> Path:
    """Where the int8 copy of `source` lives: its name says which network and which recipe it came from."""
    return Path(cache_dir).expanduser() / f"{source.stem}.{_digest(source)}.{RECIPE}.int8.onnx"


def calibration_inputs(images: list[Image.Image], det_params: dict[str, Any]) -> Iterator[np.ndarray]:
    """The detector's input tensors for `images`, prepared exactly as rapidocr prepares a page for it
    (resize rule of `det_params`, BGR, normalised, NCHW), so the calibrated ranges are the served ones."""
    from rapidocr.ch_ppocr_det.utils import DetPreProcess

    pre = DetPreProcess(int(det_params["Det.limit_side_len"]), str(det_params["Det.limit_type"]))
    for img in images:
        bgr = np.ascontiguousarray(np.asarray(img.convert("RGB"))[:, :, ::-1])
        tensor = pre(bgr)
        if tensor is not None:
            yield tensor


def build(source: Path, target: Path, calibration: list[np.ndarray]) -> None:
    """Quantise `source` into `target` (static, QOperator format, per-channel int8 weights, uint8
    activations with min-max ranges over `calibration`)."""
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:  # onnxruntime's quantisation tools import `onnx`
        raise RuntimeError("building the int8 PP-OCR detector needs the onnx package "
                           "(pip install 'socratext[ppocr]'), or set SOCRATEXT_PPOCR_DETECTOR=float") from e

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{"x": t} for t in calibration])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        pre = Path(tmp) / "pre.onnx"
        out = Path(tmp) / "int8.onnx"
        # Shape inference and constant folding first, as onnxruntime recommends before quantising; the
        # symbolic pass is skipped (the detector's spatial dimensions are free).
        quant_pre_process(str(source), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), _Reader(), quant_format=QuantFormat.QOperator,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        os.replace(out, target)  # atomic: a reader sees no file or the whole file


def int8_detector(cache_dir: Path, det_params: dict[str, Any], prepare: Any) -> Path:
    """The int8 detector's path, built first if it is not in `cache_dir` yet.

    `prepare(image) -> image` is the engine's own page preparation, applied to the bundled sample receipts
    before calibration. The build holds an exclusive lock on `cache_dir`, so concurrent workers wait for one
    build instead of each running their own.
    """
    source = wheel_detector()
    target = cached_path(cache_dir, source)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / ".int8-build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():  # another process built it while this one waited
            log.info("building the int8 PP-OCR detector into %s (once)", target)
            images = [prepare(Image.open(p)) for p in sorted(SAMPLES_DIR.glob("*.jpg"))]
            if not images:
                raise RuntimeError(f"no calibration receipts in {SAMPLES_DIR}")
            build(source, target, list(calibration_inputs(images, det_params)))
    return target
