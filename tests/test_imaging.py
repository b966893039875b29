"""`load_images`: every bad input fails with its own code, good ones come out upright RGB pages."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from socratext import errors
from socratext.errors import SocratextError
from socratext.imaging import is_pdf, load_image_file, load_images, to_rgb
from socratext.settings import Settings


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """Noise compresses badly, so cutting the file in half really removes image data."""
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8), "RGB")


def code_of(data: bytes, **kw) -> str:
    with pytest.raises(SocratextError) as exc:
        load_images(data, **kw)
    return exc.value.code


def test_empty_file():
    assert code_of(b"") == errors.EMPTY_FILE


def test_random_bytes_are_not_an_image():
    rng = np.random.default_rng(1)
    assert code_of(rng.integers(0, 255, 5000, dtype=np.uint8).tobytes()) == errors.NOT_AN_IMAGE
    assert code_of(b"hello, this is a text file\n") == errors.NOT_AN_IMAGE


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image(photo, fmt):
    data = encode(photo, fmt)
    assert code_of(data[: len(data) // 2]) == errors.TRUNCATED_IMAGE
    assert code_of(data[:30]) == errors.TRUNCATED_IMAGE  # header itself cut
    assert len(load_images(data)) == 1  # the whole file is fine


def _png_with_size(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming `width`x`height`, then a tiny IDAT: a bomb's header."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + payload))
        return struct.pack(">I", len(payload)) + kind + payload + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def test_decompression_bomb_header_is_refused_before_decoding():
    # 100k x 100k: beyond Pillow's own bomb limit too (DecompressionBombError path).
    assert code_of(_png_with_size(100_000, 100_000)) == errors.IMAGE_TOO_LARGE
    # 8000 x 8000 = 64 Mpx: Pillow would accept it, our default 40 Mpx limit does not.
    assert code_of(_png_with_size(8000, 8000)) == errors.IMAGE_TOO_LARGE


def test_pixel_limit_comes_from_settings(photo):
    data = encode(photo, "PNG")
    assert code_of(data, settings=Settings(max_image_pixels=400 * 300 - 1)) == errors.IMAGE_TOO_LARGE
    assert len(load_images(data, settings=Settings(max_image_pixels=400 * 300))) == 1


def test_file_too_large(photo):
    data = encode(photo, "JPEG")
    assert code_of(data, settings=Settings(max_file_bytes=len(data) - 1)) == errors.FILE_TOO_LARGE


def _pdf(n_pages: int) -> bytes:
    pages = [Image.new("RGB", (200, 300), (255, 255, 255)) for _ in range(n_pages)]
    for i, p in enumerate(pages):
        p.paste((0, 0, 0), (20, 20 + 30 * i, 120, 40 + 30 * i))
    return encode(pages[0], "PDF", save_all=True, append_images=pages[1:], resolution=72.0)


def test_pdf_pages_are_rendered():
    data = _pdf(3)
    assert is_pdf(data)
    images = load_images(data)
    assert len(images) == 3
    for i, img in enumerate(images):
        assert img.mode == "RGB"
        # 200x300 pt at 200 dpi
        assert abs(img.width - 556) <= 2 and abs(img.height - 833) <= 2
        arr = np.asarray(img.convert("L"))
        # the black bar drawn on page i sits where it was drawn (scaled by 200/72)
        y = int((30 + 30 * i) * 200 / 72)
        assert arr[y, int(70 * 200 / 72)] < 60
        assert arr[int(280 * 200 / 72), int(70 * 200 / 72)] > 200


def test_too_many_pdf_pages():
    assert code_of(_pdf(3), settings=Settings(max_pdf_pages=2)) == errors.TOO_MANY_PAGES


def test_broken_pdf():
    assert code_of(b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage") == errors.UNSUPPORTED_PDF
    good = _pdf(1)
    assert code_of(good[: len(good) // 3]) == errors.UNSUPPORTED_PDF


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (200, 100), (255, 255, 255))
    img.paste((255, 0, 0), (0, 0, 50, 100))  # red band on the left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    out = load_images(encode(img, "JPEG", exif=exif.tobytes(), quality=95))[0]
    assert out.size == (100, 200)
    r, g, b = out.getpixel((50, 25))  # the left band is now at the top
    assert r > 200 and g < 60 and b < 60
    r, g, b = out.getpixel((50, 180))
    assert min(r, g, b) > 200


def test_modes_become_rgb_with_white_for_transparency():
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    out = load_images(encode(rgba, "PNG"))[0]
    assert out.mode == "RGB"
    assert out.getpixel((5, 5)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (0, 0, 255)
    sixteen = Image.fromarray(np.array([[0, 65535]], dtype=np.uint16))
    assert to_rgb(sixteen).getpixel((1, 0)) == (255, 255, 255)
    assert to_rgb(Image.new("CMYK", (2, 2), (0, 0, 0, 0))).getpixel((0, 0)) == (255, 255, 255)


def test_multipage_tiff_gives_one_image_per_frame():
    frames = [Image.new("L", (40, 30), v) for v in (0, 128, 255)]
    out = load_images(encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]))
    assert [im.getpixel((0, 0))[0] for im in out] == [0, 128, 255]


def test_load_image_file_names_the_file(tmp_path, photo):
    path = tmp_path / "ticket.jpg"
    path.write_bytes(encode(photo, "JPEG")[:500])
    with pytest.raises(SocratextError, match="ticket.jpg"):
        load_image_file(path)
    path.write_bytes(encode(photo, "JPEG"))
    assert load_image_file(path)[0].size == (400, 300)


def test_formats_outside_the_allow_list_are_not_images():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    assert code_of(eps) == errors.NOT_AN_IMAGE
    assert load_images(encode(Image.new("RGB", (8, 8), "red"), "WEBP"))[0].size == (8, 8)


def test_pdf_render_scale_is_capped_by_the_pixel_limit():
    [img] = load_images(_pdf(1), settings=Settings(max_image_pixels=20_000))
    assert img.width * img.height <= 20_000
    assert img.width * img.height > 15_000
    assert abs(img.width / img.height - 200 / 300) < 0.02
