"""`receipts.ocr`: one OCR'd page (words and boxes, masked), its small page image and the rules' labels of
its words; built by stage 1, parsed (and still checked: topics are shared) by stage 2."""

from __future__ import annotations

import base64
import binascii
import io
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from socratext.document import OcrPage, WordLabel, page_receipt_id
from socratext.errors import MALFORMED_EVENT, SocratextError
from socratext.privacy import mask_page
from socratext.topics import SCHEMA_VERSION
from streams.events.envelope import check_receipt_id, check_version, load_json, parse_time
from streams.events.upload import UploadEvent

PAGE_IMAGE_SIDE = 224
"""The page image an OCR event carries is what LayoutLMv2/v3 look at: 224×224 RGB (their boxes are
normalised to 0–1000, so the aspect ratio need not survive). A JPEG of it is 5–15 KB: sending it beats
fetching and decoding the full scan again in the extract stage."""
MAX_PAGE_IMAGE_B64 = 200_000
MAX_PAGE_IMAGE_SIDE = 1024
# What one OCR page may hold. Far above any receipt (a dense A4 invoice has ~1 000 words, ~30 a line),
# and far below what makes field assembly slow: a 1 MB event with 15 000 amounts on one line, or one
# 100 KB "word", kept an extraction worker busy for minutes (line parsing is not linear in the worst
# case). Stage 2 refuses such a page as malformed_event instead of stalling its batch.
MAX_PAGE_WORDS = 10_000
MAX_LINE_WORDS = 500
MAX_WORD_CHARS = 200


@dataclass(frozen=True)
class OcrEvent:
    """A parsed `receipts.ocr` event: one OCR'd page on its way to the extractor."""

    receipt_id: str
    source: dict[str, str]
    uploaded_at: str
    page: OcrPage
    page_number: int = 1
    page_count: int = 1
    timings_ms: dict[str, float] = field(default_factory=dict)
    image: Any = None  # PIL image of the page (`page_image`), for models that look at pixels
    page_image: dict[str, Any] | None = None  # the event's own `page_image`, passed on as it came
    # the rules' labels of the page, computed by the OCR stage (`rule_labels`); None when the event has
    # none or they come from another version of the rules than this worker's (it then runs its own)
    rule_labels: list[WordLabel] | None = None


def parse_ocr(raw: bytes, *, decode_image: bool = True) -> OcrEvent:
    """Parse a `receipts.ocr` value (produced by stage 1, but still checked: topics are shared).

    `decode_image=False` (an extractor that never looks at pixels) checks the `page_image`'s form and
    header but leaves its pixels undecoded: `image` is then None, `page_image` still passed on."""
    doc = load_json(raw)
    if not isinstance(doc, dict):
        raise SocratextError(MALFORMED_EVENT, f"event is a JSON {type(doc).__name__}, not an object")
    check_version(doc)
    receipt_id = check_receipt_id(doc.get("receipt_id"))
    source = doc.get("source")
    if not isinstance(source, dict) or not all(isinstance(v, str) for v in source.values()):
        raise SocratextError(MALFORMED_EVENT, "source must be an object of strings")
    uploaded_at = parse_time(doc.get("uploaded_at"))
    try:
        page = OcrPage.from_dict(doc["page"])
        page_number, page_count = int(doc.get("page_number", 1)), int(doc.get("page_count", 1))
        timings = {str(k): float(v) for k, v in (doc.get("timings_ms") or {}).items()}
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise SocratextError(MALFORMED_EVENT, f"invalid OCR page: {type(exc).__name__}: {str(exc)[:120]}") \
            from None
    _check_page_size(page)
    raw_image = doc.get("page_image")
    image = parse_page_image(raw_image, decode=decode_image) if raw_image is not None else None
    rule_labels = parse_rule_labels(doc["rule_labels"], len(page.words)) if "rule_labels" in doc else None
    return OcrEvent(receipt_id, dict(source), uploaded_at, page, page_number, page_count, timings, image,
                    raw_image, rule_labels)


def rule_labels_doc(labels: list[WordLabel]) -> dict[str, Any]:
    """An OCR event's `rule_labels`: the rules extractor's label and probability of every word of the
    (masked) page, and which rules gave them (`socratext.extractors.rules.rules_id`)."""
    from socratext.extractors.rules import rules_id

    return {"rules": rules_id(), "labels": [w.label for w in labels],
            "probabilities": [w.probability for w in labels]}


def parse_rule_labels(doc: Any, n_words: int) -> list[WordLabel] | None:
    """`rule_labels` → one `WordLabel` per word; None when other rules than this worker's gave them (a
    rolling upgrade, a replay of older events: the extraction stage then labels the page itself).
    Anything malformed (count, unknown label, probability outside [0, 1]) is a malformed event."""
    from socratext.extractors.rules import rules_id
    from socratext.labels import WORD_LABELS

    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), str) \
            or not isinstance(doc.get("labels"), list) or not isinstance(doc.get("probabilities"), list):
        raise SocratextError(MALFORMED_EVENT,
                             "rule_labels must be {rules, labels: [...], probabilities: [...]}")
    labels, probs = doc["labels"], doc["probabilities"]
    if len(labels) != n_words or len(probs) != n_words:
        raise SocratextError(MALFORMED_EVENT, f"rule_labels has {len(labels)} labels and {len(probs)} "
                                              f"probabilities for {n_words} words")
    known = set(WORD_LABELS)
    if not all(isinstance(x, str) and x in known for x in labels):
        raise SocratextError(MALFORMED_EVENT, "rule_labels names a label that is not a word label")
    if not all(isinstance(p, int | float) and not isinstance(p, bool) and 0.0 <= p <= 1.0 for p in probs):
        raise SocratextError(MALFORMED_EVENT, "rule_labels probabilities must be numbers in [0, 1]")
    if doc["rules"] != rules_id():
        return None
    return [WordLabel(x, float(p)) for x, p in zip(labels, probs, strict=True)]


def page_image(img: Any) -> dict[str, Any]:
    """An OCR event's `page_image`: the page the boxes refer to, `PAGE_IMAGE_SIDE` square, JPEG, base64.
    At that size no printed digit is legible, so it needs no masking (the words do, see privacy)."""
    from PIL import Image

    small = img.convert("RGB").resize((PAGE_IMAGE_SIDE, PAGE_IMAGE_SIDE), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=85)
    return {"media_type": "image/jpeg", "width": PAGE_IMAGE_SIDE, "height": PAGE_IMAGE_SIDE,
            "data": base64.b64encode(buf.getvalue()).decode("ascii")}


def parse_page_image(doc: Any, *, decode: bool = True) -> Any:
    """`page_image` → RGB PIL image; anything else than a small JPEG/PNG in base64 is a malformed event.
    `decode=False`: the same checks of form, base64, image header and size, but no pixels decoded
    (returns None): most of the cost, for a model that would not look at them."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(doc, dict) or doc.get("media_type") not in ("image/jpeg", "image/png") \
            or not isinstance(doc.get("data"), str):
        raise SocratextError(MALFORMED_EVENT, "page_image must be {media_type: image/jpeg|image/png, data}")
    if len(doc["data"]) > MAX_PAGE_IMAGE_B64:
        raise SocratextError(MALFORMED_EVENT, f"page_image is over {MAX_PAGE_IMAGE_B64} base64 characters")
    try:
        img = Image.open(io.BytesIO(base64.b64decode(doc["data"], validate=True)))
        if max(img.size) > MAX_PAGE_IMAGE_SIDE:  # read from the header: refused before decoding pixels
            raise SocratextError(MALFORMED_EVENT, f"page_image is {img.size[0]}x{img.size[1]}, over "
                                                  f"{MAX_PAGE_IMAGE_SIDE} px a side")
        return img.convert("RGB") if decode else None
    except (binascii.Error, ValueError, OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise SocratextError(MALFORMED_EVENT, f"page_image is not a readable image: {type(exc).__name__}") \
            from None


def _check_page_size(page: OcrPage) -> None:
    """Refuse pages beyond `MAX_PAGE_WORDS` / `MAX_LINE_WORDS` / `MAX_WORD_CHARS` (see there why)."""
    if len(page.words) > MAX_PAGE_WORDS:
        raise SocratextError(MALFORMED_EVENT, f"OCR page has {len(page.words)} words, over {MAX_PAGE_WORDS}")
    longest = max((len(w.text) for w in page.words), default=0)
    if longest > MAX_WORD_CHARS:
        raise SocratextError(MALFORMED_EVENT,
                             f"OCR page has a {longest}-character word, over {MAX_WORD_CHARS}")
    per_line = Counter(w.line_id for w in page.words)
    line, n = max(per_line.items(), key=lambda kv: kv[1], default=(0, 0))
    if n > MAX_LINE_WORDS:
        raise SocratextError(MALFORMED_EVENT, f"OCR line {line} has {n} words, over {MAX_LINE_WORDS}")


def ocr_event(upload: UploadEvent, page: OcrPage, page_number: int, page_count: int,
              timings_ms: dict[str, float], image: Any = None, rule_labels: list[WordLabel] | None = None,
              ) -> dict[str, Any]:
    """A `receipts.ocr` value; `image` (the page the boxes refer to) becomes its `page_image`,
    `rule_labels` (the rules' labels of the page as masked here) its `rule_labels`."""
    extra: dict[str, Any] = {"page_image": page_image(image)} if image is not None else {}
    if rule_labels is not None:
        if len(rule_labels) != len(page.words):
            raise ValueError(f"{len(rule_labels)} rule labels for {len(page.words)} words")
        extra["rule_labels"] = rule_labels_doc(rule_labels)
    return {
        "schema_version": SCHEMA_VERSION,
        "receipt_id": page_receipt_id(upload.receipt_id, page_number, page_count),
        "parent_receipt_id": upload.receipt_id,
        "source": upload.source,
        "uploaded_at": upload.uploaded_at,
        "page_number": page_number,
        "page_count": page_count,
        "page": mask_page(page).export(),  # no card number leaves the OCR stage (socratext.privacy)
        "timings_ms": {k: round(float(v), 2) for k, v in timings_ms.items()},
        **extra,
    }
