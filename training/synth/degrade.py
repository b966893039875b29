"""Make a clean rendered receipt look like a phone photo of thermal paper, moving the word boxes along.

Every geometric step is a homography applied to the image *and* to the four corners of each word box
(the new box is the axis-aligned box enclosing the moved corners), so boxes stay exact up to the
enclosing-box slack of a few-degree rotation. Photometric steps (fade, paper tint, lighting, blur,
noise, JPEG) do not move pixels. Strengths are moderate on purpose: Tesseract must still read most of
the text, since the point is to train and test the extractor on realistic OCR input, not the OCR.
"""

from __future__ import annotations

import io
import math
import random

import numpy as np
from PIL import Image, ImageFilter

from training.synth.render import SynthWord

BACKGROUNDS = (
    (112, 82, 55),
    (92, 92, 98),
    (45, 45, 50),
    (62, 72, 92),
    (140, 120, 95),
    (70, 95, 70),
    (160, 160, 165),
)


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 projective matrix mapping four `src` points onto four `dst` points."""
    a = []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    h = np.linalg.solve(np.asarray(a, dtype=np.float64), dst.reshape(-1).astype(np.float64))
    return np.append(h, 1.0).reshape(3, 3)


def apply_h(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.c_[pts, np.ones(len(pts))] @ h.T
    return p[:, :2] / p[:, 2:3]


def transform_boxes(h: np.ndarray, boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Move (N, 4) boxes by `h`: transform the 4 corners, take the enclosing box, clip to the image."""
    if len(boxes) == 0:
        return boxes.reshape(0, 4).astype(int)
    x0, y0, x1, y1 = boxes.T.astype(np.float64)
    corners = np.stack([np.c_[x0, y0], np.c_[x1, y0], np.c_[x1, y1], np.c_[x0, y1]], axis=1)  # N,4,2
    moved = apply_h(h, corners.reshape(-1, 2)).reshape(-1, 4, 2)
    lo, hi = np.floor(moved.min(axis=1)), np.ceil(moved.max(axis=1))
    w, hgt = size
    out = np.c_[
        np.clip(lo[:, 0], 0, w), np.clip(lo[:, 1], 0, hgt), np.clip(hi[:, 0], 0, w), np.clip(hi[:, 1], 0, hgt)
    ]
    return out.astype(int)


def _thermal(arr: np.ndarray, rng: random.Random) -> np.ndarray:
    """Faded ink (lower contrast, sometimes fading along the paper) on a slightly tinted paper."""
    h = arr.shape[0]
    ink = 1.0 - arr / 255.0
    c0 = rng.uniform(0.6, 1.0)
    c1 = c0 * (1.0 - rng.uniform(0.0, 0.25))
    ramp = (
        np.linspace(c0, c1, h, dtype=np.float32)
        if rng.random() < 0.5
        else np.linspace(c1, c0, h, dtype=np.float32)
    )
    if rng.random() < 0.25:  # worn print head: vertical bands of weaker ink
        cols = np.ones(arr.shape[1], dtype=np.float32)
        for _ in range(rng.randint(1, 3)):
            x, bw = rng.randrange(arr.shape[1]), rng.randint(3, 25)
            cols[x : x + bw] *= rng.uniform(0.45, 0.8)
        ink = ink * cols[None, :, None]
    base = rng.uniform(228, 252)
    paper = np.array([base, base - rng.uniform(0, 5), base - rng.uniform(0, 12)], dtype=np.float32)
    return paper[None, None, :] * (1.0 - ink * ramp[:, None, None])


def _background(w: int, h: int, rng: random.Random, nrng: np.random.Generator) -> np.ndarray:
    color = np.array(rng.choice(BACKGROUNDS), dtype=np.float32) + np.array(
        [rng.uniform(-15, 15) for _ in range(3)], dtype=np.float32
    )
    small = nrng.normal(0.0, 1.0, (max(2, h // 64), max(2, w // 64), 1)).astype(np.float32)
    tex = (
        np.asarray(
            Image.fromarray(((small[:, :, 0] * 20) + 128).clip(0, 255).astype(np.uint8)).resize(
                (w, h), Image.BILINEAR
            ),
            dtype=np.float32,
        )[:, :, None]
        - 128.0
    )
    return np.clip(color[None, None, :] + tex, 0, 255)


def _lighting(h: int, w: int, rng: random.Random) -> np.ndarray:
    """A multiplicative light field: a linear gradient, sometimes a soft-edged shadow across the paper."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phi = rng.uniform(0, 2 * math.pi)
    proj = xx * math.cos(phi) + yy * math.sin(phi)
    proj = (proj - proj.min()) / max(float(np.ptp(proj)), 1.0)
    light = 1.0 - rng.uniform(0.0, 0.22) * proj
    if rng.random() < 0.35:
        psi = rng.uniform(0, 2 * math.pi)
        d = xx * math.cos(psi) + yy * math.sin(psi)
        d = (d - d.min()) / max(float(np.ptp(d)), 1.0)
        edge, soft = rng.uniform(0.55, 0.9), rng.uniform(0.02, 0.08)
        light *= 1.0 - rng.uniform(0.12, 0.3) / (1.0 + np.exp(-(d - edge) / soft))
    return light[:, :, None]


def degrade_image(img: Image.Image, words: list[SynthWord], seed: int) -> tuple[Image.Image, list[SynthWord]]:
    """Photo-like version of `img` and the words with their boxes moved along (deterministic by seed)."""
    rng = random.Random(f"degrade-{seed}")
    nrng = np.random.default_rng([abs(int(seed)), 7])
    arr = np.asarray(img.convert("L"), dtype=np.float32)[:, :, None].repeat(3, axis=2)
    paper = _thermal(arr, rng)
    ph, pw = paper.shape[:2]

    # 1. the paper on a darker table, with a margin
    left, right = (int(pw * rng.uniform(0.03, 0.14)) for _ in range(2))
    top, bottom = (int(min(120, ph * rng.uniform(0.015, 0.06))) for _ in range(2))
    cw, ch = pw + left + right, ph + top + bottom
    canvas = _background(cw, ch, rng, nrng)
    canvas[top : top + ph, left : left + pw] = paper
    boxes = np.array([w.box for w in words], dtype=np.float64).reshape(-1, 4) + [left, top, left, top]

    # 2. rotation (±3°) and a mild perspective, on an output canvas large enough to keep every corner
    theta = math.radians(rng.uniform(-3.0, 3.0))
    src = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], dtype=np.float64)
    cx, cy = cw / 2, ch / 2
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    dst = (src - [cx, cy]) @ rot.T + [cx, cy]
    jitter = 0.02 * min(cw, ch * 0.5)
    dst += np.array([[rng.uniform(-jitter, jitter), rng.uniform(-jitter, jitter)] for _ in range(4)])
    if rng.random() < 0.3:  # another camera resolution
        dst *= rng.uniform(0.9, 1.25)
    dst -= dst.min(axis=0)
    out_w, out_h = (int(math.ceil(v)) for v in dst.max(axis=0))
    h = homography(src, dst)
    inv = np.linalg.inv(h)
    inv /= inv[2, 2]
    fill = tuple(int(v) for v in canvas[0, 0])
    base = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
    warped = base.transform(
        (out_w, out_h), Image.PERSPECTIVE, tuple(inv.reshape(-1)[:8]), Image.BICUBIC, fillcolor=fill
    )
    boxes = transform_boxes(h, boxes, (out_w, out_h))

    # 3. light, blur, sensor noise, JPEG
    out = np.asarray(warped, dtype=np.float32) * _lighting(out_h, out_w, rng)
    if rng.random() < 0.75:
        out = np.asarray(
            Image.fromarray(out.clip(0, 255).astype(np.uint8)).filter(
                ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0))
            ),
            dtype=np.float32,
        )
    sigma = rng.uniform(1.5, 7.0)
    out = out + nrng.normal(0.0, sigma, (out_h, out_w, 1)).astype(np.float32)
    result = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    buf = io.BytesIO()
    result.save(buf, format="JPEG", quality=rng.randint(50, 92))
    buf.seek(0)
    result = Image.open(buf).convert("RGB")
    moved = [
        SynthWord(w.text, (int(b[0]), int(b[1]), int(b[2]), int(b[3])), w.label, w.line_id)
        for w, b in zip(words, boxes, strict=True)
    ]
    return result, moved
