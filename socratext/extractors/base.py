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

    def label(self, pages: list[OcrPage], images: list[Image.Image | None] | None = None,
              ) -> list[list[WordLabel]]:
        """Label every word of every page; `images[i]` (when given) is the image `pages[i]` was read from."""
        ...
