"""Image clean-up before Tesseract: grayscale, one working resolution, small-angle deskew.

Why these three and nothing fancier: Tesseract binarises (Otsu) by itself, its LSTM reads best when
text is some 20–40 px tall, and its line finder degrades quickly once lines are tilted by more than a
degree or two — which handheld phone shots and skewed scans routinely are. Everything here is Pillow
+ numpy (no OpenCV), and cheap next to the OCR itself (`bench/bench_ocr.py` measures both).

Coordinates: the OCR reports word boxes in pixels of the *preprocessed* image and `OcrPage.width/height`
are that image's size, so boxes and page size always agree and the normalised 0–1000 boxes the layout
models consume are the same whatever the resize. `preprocess_with_info` also returns the scale and
the deskew angle (`PreprocessInfo.map_box` puts boxes of the input image onto the output's pixels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from socratext.settings import Settings, get_settings

MAX_UPSCALE = 1.5
"""Small scans are enlarged at most this much: 1.5x added 1.6 points of word recall on SROIE's ~460 px
wide scans, while 2x (to a 2400 px side) read fewer words, more noise, and cost more time (bench)."""

MIN_SHORT_SIDE = 600
"""Downscaling stops once the short side would fall below this: a long till roll (say 800 x 4000 px)
must not be squeezed to 360 px wide just because its long side is over the working size. 600 px over
an 80 mm roll is about 190 dpi. Only a floor: a 1000 px floor (no downscale of 900 x 2000 scans) read
0.3 point fewer words on SROIE than plain long-side scaling."""

MAX_SKEW_DEG = 5.0
MIN_CORRECTED_DEG = 1.0
"""Tesseract's own line finder copes with tilts below about a degree; correcting those measured a net
loss on SROIE scans (resampling blur, and sub-degree estimates on curled paper are noise)."""

_ANALYSIS_SIDE = 1000  # long side of the binarised copy the skew is measured on


PREPROCESS_VERSION = "2"
"""Bumped whenever the output of `preprocess` changes for the same input (OCR caches key on it)."""


@dataclass(frozen=True)
class PreprocessInfo:
    """How the preprocessed image relates to the input: `scale` applied first, then the measured tilt
    `angle` (degrees, counter-clockwise) undone by rotating about the centre with canvas expansion.
    `size` is the output size, `source_size` the input's."""

    scale: float
    angle: float
    size: tuple[int, int]
    source_size: tuple[int, int] = (0, 0)

    def map_box(self, box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
        """A pixel box of the input image in the preprocessed image's pixels (the envelope of its
        rotated corners), e.g. to put ground-truth boxes on the OCR's coordinates."""
        x0, y0, x1, y1 = (v * self.scale for v in box)
        if not self.angle:
            return round(x0), round(y0), round(x1), round(y1)
        cx, cy = self.source_size[0] * self.scale / 2, self.source_size[1] * self.scale / 2
        ox, oy = self.size[0] / 2, self.size[1] / 2
        t = math.radians(-self.angle)  # the image was turned by -angle (counter-clockwise positive)
        c, s = math.cos(t), math.sin(t)
        xs, ys = [], []
        for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1)):
            dx, dy = x - cx, y - cy
            xs.append(ox + dx * c + dy * s)
            ys.append(oy - dx * s + dy * c)
        return (max(0, round(min(xs))), max(0, round(min(ys))),
                min(self.size[0], round(max(xs))), min(self.size[1], round(max(ys))))


def working_scale(width: int, height: int, max_side: int, max_upscale: float = MAX_UPSCALE,
                  min_short_side: int = MIN_SHORT_SIDE) -> float:
    """The factor that brings the long side to `max_side`, never enlarging by more than `max_upscale`
    and never shrinking the short side below `min_short_side` (text size, not pixel count, is what
    Tesseract's accuracy depends on)."""
    long_side, short_side = max(width, height, 1), max(min(width, height), 1)
    scale = max_side / long_side
    if scale > 1:
        return min(scale, max_upscale)
    return max(scale, min(1.0, min_short_side / short_side))


def otsu_threshold(gray: np.ndarray) -> int:
    """Otsu's threshold of an 8-bit array (the level that best separates ink from paper)."""
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 128
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * levels)
    w1 = total - w0
    mean_all = m0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean_all * w0 / total - m0) ** 2 / (w0 * w1)
    between = np.nan_to_num(between, nan=0.0, posinf=0.0)
    return int(np.argmax(between))


def estimate_skew(gray: Image.Image, max_angle: float = MAX_SKEW_DEG) -> float:
    """The tilt of the text lines in degrees, counter-clockwise positive (as `Image.rotate` counts).

    Projection-profile search: ink pixels of a downscaled, binarised copy are projected onto the
    vertical axis along each candidate slope; when the slope matches the text lines the row histogram
    is sharpest (largest sum of squares). A coarse pass over ±`max_angle` is refined around its best.
    """
    small = gray.convert("L")
    f = _ANALYSIS_SIDE / max(small.size)
    if f < 1:
        small = small.resize((max(1, round(small.width * f)), max(1, round(small.height * f))),
                             Image.Resampling.BILINEAR)
    arr = np.asarray(small, dtype=np.uint8)
    ink = arr < otsu_threshold(arr)
    if ink.mean() > 0.5:  # light text on a dark ground (or a dark table around the paper)
        ink = ~ink
    ys, xs = np.nonzero(ink)
    if ys.size < 50:
        return 0.0
    if ys.size > 200_000:  # a fixed-seed subsample keeps the result deterministic
        keep = np.random.default_rng(0).choice(ys.size, 200_000, replace=False)
        ys, xs = ys[keep], xs[keep]
    ys = ys.astype(np.float64)
    xs = xs.astype(np.float64) - xs.mean()

    def score(angle: float) -> float:
        rows = np.round(ys + xs * math.tan(math.radians(angle))).astype(np.int64)
        counts = np.bincount(rows - rows.min())
        return float(np.dot(counts, counts))

    coarse = np.arange(-max_angle, max_angle + 1e-9, 0.25)
    best = max(coarse, key=score)
    fine = np.arange(best - 0.25, best + 0.25 + 1e-9, 0.05)
    best = max(fine, key=score)
    # y grows downwards: a line tilted counter-clockwise by t runs y = y0 - x·tan(t), so the rows
    # y + x·tan(a) are constant along it exactly when a = t.
    return float(round(best, 2))


def deskew(gray: Image.Image, angle: float) -> Image.Image:
    """Undo a tilt of `angle` degrees, growing the canvas and filling it with paper white."""
    fill = 255 if gray.mode == "L" else (255, 255, 255)
    return gray.rotate(-angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=fill)


def preprocess_with_info(img: Image.Image, settings: Settings | None = None, *, max_side: int | None = None,
                         max_upscale: float = MAX_UPSCALE, min_short_side: int = MIN_SHORT_SIDE,
                         deskew_enabled: bool | None = None) -> tuple[Image.Image, PreprocessInfo]:
    """`preprocess`, also returning the scale and angle it applied. Keyword overrides serve the bench."""
    settings = settings or get_settings()
    max_side = settings.ocr_max_side if max_side is None else max_side
    deskew_enabled = settings.ocr_deskew if deskew_enabled is None else deskew_enabled

    source_size = img.size
    gray = img.convert("L")
    scale = (working_scale(gray.width, gray.height, max_side, max_upscale, min_short_side)
             if max_side > 0 else 1.0)
    if abs(scale - 1.0) > 1e-3:
        resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC
        gray = gray.resize((max(1, round(gray.width * scale)), max(1, round(gray.height * scale))), resample)
    angle = 0.0
    if deskew_enabled:
        angle = estimate_skew(gray)
        if abs(angle) >= MIN_CORRECTED_DEG:
            gray = deskew(gray, angle)
        else:
            angle = 0.0
    return gray, PreprocessInfo(scale=scale, angle=angle, size=gray.size, source_size=source_size)


def preprocess(img: Image.Image, settings: Settings | None = None) -> Image.Image:
    """The image Tesseract reads: grayscale ("L"), long side at `settings.ocr_max_side` (short side kept
    at `MIN_SHORT_SIDE` or more, small scans enlarged at most `MAX_UPSCALE`), tilts of a degree or more
    straightened."""
    return preprocess_with_info(img, settings)[0]


PPOCR_MAX_UPSCALE = 1.0
"""PP-OCR's detector resizes its input itself (short side to 736 px) and its recogniser scales every text
line to 48 px tall: enlarging small scans first, as Tesseract needs, only adds pixels to the detector."""
