"""Lay receipt lines out on thermal paper and draw them, measuring every word's box from its glyphs.

A receipt is described as `Line`s of `Cell`s (a run of text anchored left/right/centre at a fraction of
the printable width) made of `Seg`s (a piece of text with one word label). Rendering draws word by
word and takes each box from `ImageDraw.textbbox`, i.e. from the glyphs actually drawn, so the ground
truth boxes are tight and exact (no estimate from character counts).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from socratext.labels import WORD_LABELS

FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/liberation")

# (family kind, regular file, bold file, average char width / size, weight)
FONT_FAMILIES: tuple[tuple[str, str, str, float, float], ...] = (
    ("mono", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", 0.60, 3.0),
    ("mono", "LiberationMono-Regular.ttf", "LiberationMono-Bold.ttf", 0.60, 3.0),
    ("sans", "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", 0.62, 1.2),
    ("sans", "DejaVuSansCondensed.ttf", "DejaVuSansCondensed-Bold.ttf", 0.56, 1.0),
    ("sans", "LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf", 0.55, 1.2),
    ("sans", "LiberationSansNarrow-Regular.ttf", "LiberationSansNarrow-Bold.ttf", 0.46, 0.8),
    ("serif", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", 0.62, 0.4),
    ("serif", "LiberationSerif-Regular.ttf", "LiberationSerif-Bold.ttf", 0.52, 0.4),
)

STYLE_SCALE = {"normal": 1.0, "bold": 1.0, "small": 0.85, "big": 1.3, "title": 1.6}
STYLE_BOLD = {"normal": False, "bold": True, "small": False, "big": True, "title": True}


def font_path(filename: str) -> str:
    import os

    for d in FONT_DIRS:
        p = os.path.join(d, filename)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(
        f"font {filename} not found in {FONT_DIRS} (install fonts-dejavu, fonts-liberation)"
    )


@lru_cache(maxsize=256)
def load_font(filename: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(font_path(filename), size)


@dataclass
class Seg:
    """A piece of printed text whose words all carry `label`."""

    text: str
    label: str = "O"

    def __post_init__(self) -> None:
        if self.label not in WORD_LABELS:
            raise ValueError(f"unknown word label {self.label!r}")


@dataclass
class Cell:
    """Segments printed as one run, anchored at `x` (fraction of the printable width) by `align`."""

    segs: list[Seg]
    x: float = 0.0
    align: str = "left"  # left | right | center

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segs if s.text)


@dataclass
class Line:
    cells: list[Cell] = field(default_factory=list)
    style: str = "normal"
    space_before: float = 0.0  # extra vertical space, in line heights
    rule: str | None = None  # separator kind: "solid" (drawn), "text" (dashes), "blank" (white space)


@dataclass(frozen=True)
class SynthWord:
    """One ground-truth word: text, pixel box (x0, y0, x1, y1), label of WORD_LABELS, printed line."""

    text: str
    box: tuple[int, int, int, int]
    label: str
    line_id: int

    def export(self) -> dict:
        return {"text": self.text, "box": list(self.box), "label": self.label, "line_id": self.line_id}


class Typography:
    """The receipt's paper width, margins, font family, size, spacing and ink, drawn from one rng."""

    def __init__(self, rng: random.Random, width: int | None = None):
        self.width = width or rng.randint(380, 600)
        self.margin = rng.randint(12, 30)
        self.cw = self.width - 2 * self.margin  # printable width
        fam = rng.choices(FONT_FAMILIES, weights=[f[4] for f in FONT_FAMILIES])[0]
        self.family, self.regular, self.bold, char_w = fam[0], fam[1], fam[2], fam[3]
        chars = rng.uniform(32, 44)
        self.size = max(16, min(24, int(round(self.cw / (char_w * chars)))))
        self.spacing = rng.uniform(1.15, 1.45)
        self.ink = rng.randint(0, 45)
        self.top = rng.randint(18, 50)
        self.bottom = rng.randint(18, 50)
        self.all_bold = self.family == "mono" and rng.random() < 0.15  # some printers print everything bold

    def font(self, style: str = "normal", scale: float = 1.0) -> ImageFont.FreeTypeFont:
        size = max(8, int(round(self.size * STYLE_SCALE[style] * scale)))
        bold = STYLE_BOLD[style] or self.all_bold
        return load_font(self.bold if bold else self.regular, size)

    def text_width(self, text: str, style: str = "normal") -> float:
        return self.font(style).getlength(text)

    def cell_span(self, cell: Cell, font: ImageFont.FreeTypeFont) -> tuple[float, float]:
        w = font.getlength(cell.text)
        x = self.cw * cell.x
        if cell.align == "right":
            x -= w
        elif cell.align == "center":
            x -= w / 2
        return x, x + w

    def fit_cell(self, line: Line, idx: int) -> None:
        """Truncate the text of `line.cells[idx]` (in place) so it does not run into its neighbours.

        Tills cut long article names at a fixed width, mid-word ("BOUTEILLE COTES DU R"); we do the
        same (minus a dangling article), and the caller reads the fitted text back for the ground truth.
        """
        font = self.font(line.style)
        gap = font.getlength("  ")
        cell = line.cells[idx]
        x0, _ = self.cell_span(cell, font)
        limit = float(self.cw)
        for j, other in enumerate(line.cells):
            if j == idx:
                continue
            ox0, ox1 = self.cell_span(other, font)
            if ox0 >= x0:
                limit = min(limit, ox0 - gap)
        seg = cell.segs[-1]
        while font.getlength(cell.text) > limit - x0 and len(seg.text) > 3:
            seg.text = seg.text[:-1].rstrip()
        if seg.text.endswith((" DE", " DU", " AU", " A", " LA")) or seg.text[-2:-1] == " ":
            seg.text = seg.text.rsplit(" ", 1)[0]  # no dangling article or lone letter after a cut


def ink_box(font: ImageFont.FreeTypeFont, word: str, pos: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box of the pixels `draw.text(pos, word, anchor="ls")` inks: tight like an OCR word box.

    `textbbox` spans the advance width (side bearings included); the glyph mask's own bbox does not.
    """
    mask, (ox, oy) = font.getmask2(word, mode="L", anchor="ls")
    bb = mask.getbbox() or (0, 0, mask.size[0], mask.size[1])
    return (pos[0] + ox + bb[0], pos[1] + oy + bb[1], pos[0] + ox + bb[2], pos[1] + oy + bb[3])


def _line_fits(typo: Typography, line: Line, font: ImageFont.FreeTypeFont) -> bool:
    spans = sorted(typo.cell_span(c, font) for c in line.cells if c.text)
    if not spans:
        return True
    gap = font.getlength(" ")
    if spans[0][0] < -typo.margin * 0.5 or spans[-1][1] > typo.cw + typo.margin * 0.5:
        return False
    return all(a[1] + gap <= b[0] for a, b in zip(spans, spans[1:], strict=False))


def render(lines: list[Line], typo: Typography) -> tuple[Image.Image, list[SynthWord]]:
    """Draw the lines top to bottom on white paper; return the RGB image and the words in reading order.

    A line whose cells collide is printed with a smaller font (down to 60 %) instead of being cut, so
    that no text changes after the ground truth was built.
    """
    placed: list[tuple[Line, ImageFont.FreeTypeFont, float, float]] = []  # line, font, top, line height
    y = float(typo.top)
    for line in lines:
        font = typo.font(line.style)
        scale = 1.0
        while not _line_fits(typo, line, font) and scale > 0.6:
            scale -= 0.05
            font = typo.font(line.style, scale)
        ascent, descent = font.getmetrics()
        lh = (ascent + descent) * (
            typo.spacing if line.rule is None else 0.5 if line.rule == "blank" else 0.8
        )
        y += line.space_before * lh
        placed.append((line, font, y, lh))
        y += lh
    height = int(round(y + typo.bottom))
    img = Image.new("RGB", (typo.width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    ink = (typo.ink,) * 3
    words: list[SynthWord] = []
    line_id = 0
    for line, font, top, lh in placed:
        if line.rule == "solid":
            yy = int(top + lh / 2)
            draw.line([(typo.margin, yy), (typo.width - typo.margin, yy)], fill=ink, width=1)
            continue
        if line.rule == "blank":
            continue
        ascent, descent = font.getmetrics()
        baseline = top + (lh - ascent - descent) / 2 + ascent
        emitted = False
        for cell in sorted(line.cells, key=lambda c: typo.cell_span(c, font)[0]):
            text = cell.text
            if not text:
                continue
            x_cell = typo.margin + typo.cell_span(cell, font)[0]
            offset = 0
            for seg in cell.segs:
                for word in seg.text.split(" "):
                    if not word:
                        offset += 1
                        continue
                    start = text.index(word, offset)
                    pos = (round(x_cell + font.getlength(text[:start])), round(baseline))
                    offset = start + len(word)
                    draw.text(pos, word, font=font, fill=ink, anchor="ls")
                    box = ink_box(font, word, pos)
                    words.append(SynthWord(word, box, seg.label, line_id))
                    emitted = True
        if emitted:
            line_id += 1
    return img, words
