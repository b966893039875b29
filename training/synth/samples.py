"""The demo receipts bundled in `socratext/samples/`: six degraded synthetic receipts with ground truth.

Seeds and shop kinds are fixed here so that `write_samples()` always rewrites the same files; the
JSON beside each image is the generator's ground truth (words, fields, items, VAT lines).
"""

from __future__ import annotations

import json
from pathlib import Path

from training.synth.generator import generate_receipt

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "socratext" / "samples"

# (seed, shop kind): varied shops, layouts and fonts; chosen by looking at the results once.
SAMPLE_SPECS: tuple[tuple[int, str], ...] = (
    (101, "supermarket"),
    (102, "bakery"),
    (103, "restaurant"),
    (104, "pharmacy"),
    (105, "diy"),
    (106, "supermarket"),
)
MAX_BYTES = 150_000


def write_samples(out_dir: str | Path | None = None, quality: int = 85) -> list[Path]:
    """Write `sample_NN.jpg` + `sample_NN.json`; lower the JPEG quality if an image would exceed 150 KB."""
    out = Path(out_dir) if out_dir is not None else SAMPLES_DIR
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for i, (seed, kind) in enumerate(SAMPLE_SPECS, start=1):
        r = generate_receipt(seed, degrade=True, kind=kind)
        img_path = out / f"sample_{i:02d}.jpg"
        q = quality
        while True:
            r.image.save(img_path, format="JPEG", quality=q, optimize=True)
            if img_path.stat().st_size <= MAX_BYTES or q <= 50:
                break
            q -= 5
        gt = r.export()
        gt["image"] = img_path.name
        (out / f"sample_{i:02d}.json").write_text(
            json.dumps(gt, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
        written.append(img_path)
    return written
