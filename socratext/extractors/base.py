"""The extractor interface: OCR pages (and their images) in, one `WordLabel` per word out, in batches.

Both the rules extractor and the layout models implement it, so field assembly, the CLI, the
evaluation and the streaming worker never know which one they run.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from PIL import Image

from socratext.document import OcrPage, WordLabel


@runtime_checkable
class Extractor(Protocol):
    name: str
    version: str
    # whether `label` looks at `images` (a layout model with a visual backbone); the extraction stage
    # decodes the events' page images only for such an extractor (`uses_page_images`)
    uses_images: bool

    def label(self, pages: list[OcrPage], images: list[Image.Image | None] | None = None,
              ) -> list[list[WordLabel]]:
        """Label every word of every page; `images[i]` (when given) is the image `pages[i]` was read from."""
        ...


def uses_page_images(extractor: object) -> bool:
    """Whether `extractor` looks at page images; True when it does not say (decoding one costs ~0.25 ms
    of the extraction stage's host time per receipt, so it is skipped only where it is known useless)."""
    return bool(getattr(extractor, "uses_images", True))
