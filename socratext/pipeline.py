"""The extraction path as a composition of batch stages: load → OCR → label → assemble.

Each stage is a plain callable on a batch. The CLI runs all of them in one process; the streaming
workers run the OCR in one stage (`OcrStage`, in `streams.agents.ocr`) and the labelling + assembly in
another (`socratext.extraction.extract_pages`, which `ExtractStage` wraps), around the parsing and
publishing of events.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageFilter

from socratext import errors
from socratext.document import OcrPage, Receipt, WordLabel, page_receipt_id
from socratext.errors import SocratextError
from socratext.extraction import ExtractFailure, extract_pages
from socratext.extractors.base import Extractor
from socratext.fields.known import KnownValues
from socratext.settings import Settings, get_settings

log = logging.getLogger(__name__)
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"


def receipt_id_for(data: bytes) -> str:
    """A content-derived id: the same file always gets the same id, so re-runs deduplicate downstream."""
    return hashlib.sha256(data).hexdigest()[:16]


PLUGIN_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
"""`package.module:Name`: an extractor plugin (a class or factory called without arguments)."""


def load_plugin_extractor(spec: str) -> Extractor:
    """Import `package.module:Name` and build the extractor it names, so a worker can serve a custom
    extractor (another model family, a fault-injecting one in the fault tests) through settings alone."""
    import importlib

    module, _, attr = spec.partition(":")
    try:
        target = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load extractor plugin {spec!r}: {exc}") from exc
    is_factory = isinstance(target, type) or (callable(target) and not hasattr(target, "label"))
    try:
        extractor = target() if is_factory else target
    except TypeError as exc:  # a factory that wants arguments
        raise ValueError(f"extractor plugin {spec!r} cannot be built without arguments: {exc}") from exc
    if not all(hasattr(extractor, a) for a in ("name", "version", "label")):
        raise ValueError(f"extractor plugin {spec!r} has no name/version/label: not an Extractor")
    return extractor


def load_extractor(name: str | Extractor | None = None, settings: Settings | None = None) -> Extractor:
    """Resolve `--model`: "rules", "default" (the bundled model), a local model directory, a hub id, or a
    registry reference "registry:<name>" (its current version) / "registry:<name>@<version>", or a plugin
    "package.module:Name" (`load_plugin_extractor`).

    An extractor instance is returned as it is, so every entry point takes either form.

    "default" falls back to the rules extractor only when no default model is bundled, so a checkout
    without trained weights still works end to end.
    """
    if name is not None and not isinstance(name, str):
        return name
    settings = settings or get_settings()
    name = name or settings.model
    from socratext.extractors.rules import RulesExtractor

    if name == "rules":
        return RulesExtractor()
    if name.startswith("registry:"):
        from socratext.registry import load_registry_extractor

        return load_registry_extractor(name, settings)
    if PLUGIN_RE.match(name) and not Path(name).exists():
        return load_plugin_extractor(name)
    if name == "default":
        if not (DEFAULT_MODEL_DIR / "config.json").exists():
            log.warning("no bundled default model in %s: using the rules extractor", DEFAULT_MODEL_DIR)
            return RulesExtractor()
        name = str(DEFAULT_MODEL_DIR)
    from socratext.model.extractor import LayoutModelExtractor

    return LayoutModelExtractor.from_pretrained(name, device=settings.device)


def read_known_values(spec: str, settings: Settings | None = None) -> bytes:
    """The raw known-values file named by `spec`: a local path or "s3://bucket/key" in the object store."""
    if spec.startswith("s3://"):
        from socratext.storage import ObjectStore

        bucket, _, key = spec[len("s3://"):].partition("/")
        if not bucket or not key:
            raise ValueError(f"known values: expected s3://bucket/key, got {spec!r}")
        return ObjectStore(settings or get_settings()).get_bytes(bucket, key)
    return Path(spec).read_bytes()


def load_known_values(spec: str, settings: Settings | None = None) -> KnownValues | None:
    """`settings.known_values`: "" (none), a local JSON file, or "s3://bucket/key" in the object store."""
    if not spec:
        return None
    kv = KnownValues.loads(read_known_values(spec, settings))
    log.info("known values: %d names and addresses from %s", len(kv), spec)
    return kv


@dataclass
class OcrResult:
    """What the OCR stage hands on: the page, the preprocessed image the boxes refer to, and timings."""

    page: OcrPage
    image: Image.Image
    timings_ms: dict[str, float]
    sharpened: bool = False  # the second pass (sharpened copy) won: `image` is that copy
    second_engine: bool = False  # the second pass's other engine (`ocr_second_pass_backend`) won


def key_fields_readable(page: OcrPage) -> int:
    """How many of the two fields almost every receipt prints were read: a date, an amount on a total line.

    A cheap, extractor-independent signal that the OCR misread the receipt (faded or blurred photo), used to
    decide on a second OCR pass.
    """
    from socratext.extractors.rules import TOTAL_KW
    from socratext.fields.normalize import find_amounts, find_dates, fold

    texts = [" ".join(page.words[i].text for i in line) for line in page.lines()]
    has_date = any(find_dates(t) for t in texts)
    has_total = any(TOTAL_KW.search(fold(t).upper()) and find_amounts(t) for t in texts)
    return int(has_date) + int(has_total)


def sharpen(image: Image.Image) -> Image.Image:
    """Unsharp mask for the second OCR pass: restores stroke edges on blurred or faded photos."""
    return image.filter(ImageFilter.UnsharpMask(radius=2, percent=150, threshold=3))


class OcrStage:
    """Image → preprocess → Tesseract, one receipt at a time (parallelism belongs at receipt level).

    When the first pass misses the date or the total line (`key_fields_readable`), a second pass reads a
    sharpened copy and the better-read page wins. Sharpening every image is worse on average (it breaks
    clean prints), so it is only a fallback; it costs a second OCR on the hard receipts only.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        from socratext.ocr import make_ocr

        self.settings = settings or get_settings()
        # Preprocessing is done here, not inside the OCR, because the extractor needs the very image
        # the OCR boxes refer to (deskewed and resized). The engine (`settings.ocr_backend`) is
        # thread-safe: the streaming worker calls one stage from several threads.
        self.ocr = make_ocr(self.settings, languages=self.settings.ocr_languages, preprocess=False)
        backend2 = self.settings.ocr_second_pass_backend
        self.second_ocr = (make_ocr(self.settings, backend=backend2, languages=self.settings.ocr_languages,
                                    preprocess=False)
                           if self.settings.ocr_second_pass and backend2 else None)
        """The engine of the second pass when it is another engine (`ocr_second_pass_backend`)."""

    def __call__(self, images: Sequence[Image.Image]) -> list[OcrResult]:
        from socratext.privacy import mask_page

        out = []
        for img in images:
            t0 = time.perf_counter()
            pre = self.ocr.prepare(img)
            t1 = time.perf_counter()
            page = self.ocr([pre])[0]
            timings = {"preprocess": (t1 - t0) * 1e3, "ocr": (time.perf_counter() - t1) * 1e3}
            sharpened = second_engine = False
            if self.settings.ocr_second_pass and (score := key_fields_readable(page)) < 2:
                t2 = time.perf_counter()
                if self.second_ocr is not None:
                    # Another engine reads the image as it prepares it; it wins ties: it is only asked
                    # for where the first engine failed, and it is the more accurate one.
                    alt = self.second_ocr.prepare(img)
                    alt_page = self.second_ocr([alt])[0]
                    if key_fields_readable(alt_page) >= score:
                        page, pre, second_engine = alt_page, alt, True
                else:
                    alt = sharpen(pre)
                    alt_page = self.ocr([alt])[0]
                    if key_fields_readable(alt_page) > score:
                        page, pre, sharpened = alt_page, alt, True
                timings["ocr_second_pass"] = (time.perf_counter() - t2) * 1e3
            # No card number goes further than the OCR: model input, outputs and logs see it masked.
            # Confidences at an event's precision: the CLI and the worker assemble the same receipt.
            out.append(OcrResult(mask_page(page).as_exported(), pre, timings, sharpened, second_engine))
        return out


class ExtractStage:
    """Label a micro-batch of OCR pages with one loaded extractor, then assemble each receipt's fields:
    `socratext.extraction.extract_pages`, the stage-2 code the extraction workers run too."""

    def __init__(self, extractor: Extractor, settings: Settings | None = None,
                 known: KnownValues | None = None) -> None:
        self.extractor = extractor
        self.settings = settings or get_settings()
        self.known = known if known is not None else load_known_values(self.settings.known_values,
                                                                       self.settings)

    def run(self, pages: Sequence[OcrPage], images: Sequence[Image.Image | None] | None,
            receipt_ids: Sequence[str], sources: Sequence[dict[str, str]],
            rule_labels: Sequence[list[WordLabel] | None] | None = None) -> list[Receipt | ExtractFailure]:
        """Per page, in order, its receipt or its `ExtractFailure`: a page that breaks the model or the
        assembly is lost alone."""
        return extract_pages(self.extractor, pages, images, receipt_ids, sources, rule_labels,
                             review_threshold=self.settings.review_threshold, known=self.known)

    def __call__(self, pages: Sequence[OcrPage], images: Sequence[Image.Image | None] | None,
                 receipt_ids: Sequence[str], sources: Sequence[dict[str, str]]) -> list[Receipt]:
        """Every page's receipt; the first failure's exception is raised (`run` keeps the others)."""
        out = self.run(pages, images, receipt_ids, sources)
        for res in out:
            if isinstance(res, ExtractFailure):
                raise res.error
        return out  # type: ignore[return-value]


@dataclass
class Failure:
    """One input that could not be processed, with the stable error code of `socratext.errors`."""

    source: str
    code: str
    message: str


def extract_files(paths: Iterable[str | Path], extractor: Extractor | str | None = None,
                  settings: Settings | None = None, batch_size: int = 8,
                  progress: Callable[[int], object] | None = None,
                  jobs: int = 1) -> tuple[list[Receipt], list[Failure]]:
    """Run the whole path on files; a bad file becomes a `Failure` and the others go on.

    `progress`, when given, is called with the number of files finished after each one. Keeps every
    receipt in memory: for many files, iterate `iter_extract_files` instead.
    """
    receipts: list[Receipt] = []
    failures: list[Failure] = []
    for out in iter_extract_files(paths, extractor, settings, batch_size=batch_size, jobs=jobs,
                                  progress=progress):
        if isinstance(out, Failure):
            failures.append(out)
        else:
            receipts.append(out)
    return receipts, failures


PendingPage = tuple[OcrResult, str, dict[str, str], float]
"""One OCR'd page waiting for the model: the OCR result, its receipt id, its source and the load time (ms)."""


def ocr_file(path: Path, ocr: OcrStage, settings: Settings,
             skip_ids: Container[str] = frozenset()) -> list[PendingPage] | Failure:
    """Load and OCR one file (run on an OCR thread): its pages not in `skip_ids`, or its `Failure`.

    The id is the content hash, so resuming must read the file; reading and decoding are cheap next to
    the OCR, which is what a skipped page saves. A PDF's pages are `<id>-p<n>`: a run interrupted between
    two pages of one file resumes with the pages it had not written.
    """
    from socratext.imaging import load_images

    try:
        t0 = time.perf_counter()
        data = path.read_bytes()
        rid = receipt_id_for(data)
        if rid in skip_ids:
            return []
        images = load_images(data, name=path.name, settings=settings)
        load_ms = (time.perf_counter() - t0) * 1e3
        page_ids = [page_receipt_id(rid, n, len(images)) for n in range(1, len(images) + 1)]
        todo = [(img, pid) for img, pid in zip(images, page_ids, strict=True) if pid not in skip_ids]
        results = ocr([img for img, _ in todo]) if todo else []
        return [(res, pid, {"path": str(path)}, load_ms)
                for res, (_, pid) in zip(results, todo, strict=True)]
    except SocratextError as exc:
        return Failure(str(path), exc.code, exc.message)
    except OSError as exc:
        code = errors.FILE_NOT_FOUND if not path.exists() else errors.IO_ERROR
        return Failure(str(path), code, str(exc))


def iter_extract_files(paths: Iterable[str | Path], extractor: Extractor | str | None = None,
                       settings: Settings | None = None, batch_size: int = 8, jobs: int = 1,
                       skip_ids: Container[str] = frozenset(),
                       progress: Callable[[int], object] | None = None) -> Iterator[Receipt | Failure]:
    """The batch tool's path: yield each receipt (in input order) or `Failure` as soon as it is done.

    `jobs` threads load and OCR files (Tesseract releases the GIL, so they run on as many cores) while
    this thread labels micro-batches with the model: a batch is whatever OCR'd pages are ready, up to
    `batch_size`, so results stream out without waiting for a full batch, and batches fill up when the
    model is the slower side. `extractor` is loaded once the first files are submitted, so loading a
    layout model (seconds) overlaps their OCR. At most `2 * jobs + batch_size` files are read ahead and
    nothing is kept once yielded: memory stays constant however many `paths` (consumed lazily) there
    are. Pages whose receipt id is in `skip_ids` are not OCR'd (resume). `progress` is called with the
    number of files finished. Closing the generator (Ctrl-C in the caller) cancels the files not started.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    settings = settings or get_settings()
    ocr = OcrStage(settings)
    jobs, batch_size = max(1, jobs), max(1, batch_size)
    window = 2 * jobs + batch_size
    todo = iter(paths)
    inflight: deque[Future[list[PendingPage] | Failure]] = deque()
    pending: list[PendingPage] = []
    stage: ExtractStage | None = None

    def label() -> Iterator[Receipt | Failure]:
        assert stage is not None
        batch = pending[:batch_size]
        del pending[:batch_size]
        outs = stage.run([p[0].page for p in batch], [p[0].image for p in batch], [p[1] for p in batch],
                         [p[2] for p in batch])
        for rec, (res, _, src, load_ms) in zip(outs, batch, strict=True):
            if isinstance(rec, ExtractFailure):  # only the page that broke the model or the assembly
                yield Failure(src["path"], rec.code, rec.message)
                continue
            rec.timings_ms = {"load": load_ms, **res.timings_ms, **rec.timings_ms}
            rec.timings_ms["total"] = sum(rec.timings_ms.values())
            yield rec

    pool = ThreadPoolExecutor(jobs, thread_name_prefix="socratext-ocr")
    try:
        done = 0
        while True:
            while len(inflight) < window and (path := next(todo, None)) is not None:
                inflight.append(pool.submit(ocr_file, Path(path), ocr, settings, skip_ids))
            if stage is None:
                # The model (torch, transformers: seconds of imports and loading) loads while the first
                # files are OCR'd, not before.
                stage = ExtractStage(load_extractor(extractor, settings), settings)
            if not inflight:
                break
            if pending and not inflight[0].done():  # nothing more ready yet: label what is
                yield from label()
                continue
            outcome = inflight.popleft().result()
            done += 1
            if isinstance(outcome, Failure):
                yield outcome
            else:
                pending.extend(outcome)
            while len(pending) >= batch_size:
                yield from label()
            if progress is not None:
                progress(done)
        while pending:
            yield from label()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def extract(images: Sequence[Image.Image], extractor: Extractor | str | None = None,
            settings: Settings | None = None, receipt_ids: Sequence[str] | None = None) -> list[Receipt]:
    """The library entry point on in-memory images (a batch): `socratext.extract([img, ...])`."""
    settings = settings or get_settings()
    ext = load_extractor(extractor, settings)
    results = OcrStage(settings)(images)
    ids = list(receipt_ids) if receipt_ids is not None else [
        receipt_id_for(img.tobytes()) for img in images]
    return ExtractStage(ext, settings)([r.page for r in results], [r.image for r in results], ids,
                                       [{"path": f"<memory:{i}>"} for i in range(len(images))])
