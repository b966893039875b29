"""Bytes in, RGB page images out: the one gate every receipt file goes through before OCR.

Receipts arrive from phones, scanners and e-mail as JPEG, PNG, WebP, TIFF, BMP, GIF or PDF.
Everything that can go wrong with such a file (empty, not an image, cut short in transit, a
decompression bomb, a huge or encrypted PDF) is turned here into a `SocratextError` with a stable
code, *before* any expensive decoding, so the stream can dead-letter it and move on. A PDF gives one
image per page (one receipt per page); a multi-page TIFF one image per frame.
"""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
from PIL import Image, ImageOps, UnidentifiedImageError

from socratext.errors import (
    EMPTY_FILE,
    FILE_TOO_LARGE,
    IMAGE_TOO_LARGE,
    NOT_AN_IMAGE,
    TOO_MANY_PAGES,
    TRUNCATED_IMAGE,
    UNSUPPORTED_PDF,
    SocratextError,
)
from socratext.settings import Settings, get_settings

PDF_DPI = 200
"""Render resolution for PDF pages: enough for 8-pt receipt text, and the OCR resizes anyway."""

# Only the decoders a receipt needs: a smaller attack surface, and no format that shells out (EPS).
# (Multi-picture JPEGs from phones open through the JPEG plugin, as MPO.)
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")

# Signatures of the formats whose *truncation* we want to name as such rather than "not an image".
_IMAGE_MAGICS = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"II*\x00", b"MM\x00*", b"BM")

# What a cut-short or corrupt stream raises inside Pillow's decoders.
_DECODE_ERRORS = (OSError, SyntaxError, EOFError, ValueError, IndexError, struct.error)


def _label(name: str) -> str:
    return f" ({name})" if name else ""


def load_images(data: bytes, *, name: str = "", settings: Settings | None = None) -> list[Image.Image]:
    """Decode a receipt file (image or PDF) into RGB images, upright, one per page.

    Raises `SocratextError` with code empty_file, file_too_large, not_an_image, truncated_image,
    image_too_large, unsupported_pdf or too_many_pages. `name` only decorates the messages.
    """
    settings = settings or get_settings()
    if not data:
        raise SocratextError(EMPTY_FILE, f"the file is empty{_label(name)}")
    if len(data) > settings.max_file_bytes:
        raise SocratextError(FILE_TOO_LARGE, f"{len(data)} bytes is over the limit of "
                                             f"{settings.max_file_bytes}{_label(name)}")
    if is_pdf(data):
        return _render_pdf(data, name, settings)
    return _decode_image(data, name, settings)


def is_pdf(data: bytes) -> bool:
    """PDF magic: `%PDF-` at the start, or within the first KiB as the spec tolerates (not in an image)."""
    return data.startswith(b"%PDF") or (not data.startswith(_IMAGE_MAGICS) and b"%PDF-" in data[:1024])


def load_image_file(path: str | Path, settings: Settings | None = None) -> list[Image.Image]:
    """`load_images` on a local file (the CLI's entry); the file name goes into error messages."""
    path = Path(path)
    return load_images(path.read_bytes(), name=path.name, settings=settings)


def _decode_image(data: bytes, name: str, settings: Settings) -> list[Image.Image]:
    try:
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise SocratextError(IMAGE_TOO_LARGE, f"{e}{_label(name)}") from e
    except UnidentifiedImageError as e:
        if data.startswith(_IMAGE_MAGICS):
            raise SocratextError(TRUNCATED_IMAGE,
                                 f"the image header is cut short or corrupt{_label(name)}") from e
        raise SocratextError(NOT_AN_IMAGE, f"not an image or PDF{_label(name)}") from e
    except _DECODE_ERRORS as e:
        raise SocratextError(TRUNCATED_IMAGE, f"corrupt image header: {e}{_label(name)}") from e

    # Only the header has been parsed so far: refuse giant canvases before allocating them.
    n_frames = getattr(img, "n_frames", 1) if img.format == "TIFF" else 1
    if n_frames > settings.max_pdf_pages:
        raise SocratextError(TOO_MANY_PAGES, f"{n_frames} frames, the limit is {settings.max_pdf_pages}"
                                             f"{_label(name)}")
    pages = []
    for frame in range(n_frames):
        if frame:
            img.seek(frame)
        w, h = img.size
        if w <= 0 or h <= 0:
            raise SocratextError(NOT_AN_IMAGE, f"image of size {w}x{h}{_label(name)}")
        if w * h > settings.max_image_pixels:
            raise SocratextError(IMAGE_TOO_LARGE, f"{w}x{h} pixels is over the limit of "
                                                  f"{settings.max_image_pixels}{_label(name)}")
        try:
            img.load()  # LOAD_TRUNCATED_IMAGES stays False: a cut file must fail, not come out half grey
            page = ImageOps.exif_transpose(img) if frame == 0 else img.copy()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise SocratextError(IMAGE_TOO_LARGE, f"{e}{_label(name)}") from e
        except _DECODE_ERRORS as e:
            raise SocratextError(TRUNCATED_IMAGE, f"the image data is cut short or corrupt: {e}"
                                                  f"{_label(name)}") from e
        pages.append(to_rgb(page))
    return pages


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency goes onto white (receipt paper), not black."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _render_pdf(data: bytes, name: str, settings: Settings) -> list[Image.Image]:
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as e:
        raise SocratextError(UNSUPPORTED_PDF, f"cannot open the PDF ({e}){_label(name)}") from e
    try:
        n = len(pdf)
        if n == 0:
            raise SocratextError(UNSUPPORTED_PDF, f"the PDF has no page{_label(name)}")
        if n > settings.max_pdf_pages:
            raise SocratextError(TOO_MANY_PAGES, f"{n} pages, the limit is {settings.max_pdf_pages}"
                                                 f"{_label(name)}")
        images = []
        for i in range(n):
            page = pdf[i]
            try:
                w_pt, h_pt = page.get_size()
                # A page of absurd size must not allocate gigabytes: shrink its scale to the pixel limit.
                scale = min(PDF_DPI / 72, math.sqrt(settings.max_image_pixels / max(w_pt * h_pt, 1.0)))
                limit = settings.max_image_pixels
                while scale > 0.01 and math.ceil(w_pt * scale) * math.ceil(h_pt * scale) > limit:
                    scale *= 0.99  # pdfium rounds the bitmap size up
                bitmap = page.render(scale=scale, may_draw_forms=True)
                images.append(to_rgb(bitmap.to_pil()))
            except pdfium.PdfiumError as e:
                raise SocratextError(UNSUPPORTED_PDF,
                                     f"cannot render page {i + 1} ({e}){_label(name)}") from e
            finally:
                page.close()
        return images
    finally:
        pdf.close()
