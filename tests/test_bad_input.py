"""Bad input through the real stack: one table of hostile or broken inputs, each with the dead-letter code
and stage it must get, published interleaved with good receipts into one worker subprocess.

What the table holds the service to (docs/operations.md, "Dead-letter handling", says what to do with
each code):

* every bad input comes out on `receipts.deadletter` with exactly its code and stage, and never on
  `receipts.extracted`;
* every good receipt published among them comes out extracted;
* the worker stays healthy (the time the good receipts take among the bad ones against alone is printed
  here and measured by bench/bench_bad_input.py: a benchmark, not a wall-clock assertion);
* no card number and no credential reaches an output event or the worker's log.

Run alone: `pytest -q -s tests/test_bad_input.py` prints the table (case, code, stage). The same rows
also run without the stack against the functions that refuse them (fast feedback on every run).
"""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pypdfium2 as pdfium
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from socratext.cli_stream import make_producer, upload_files
from socratext.errors import (
    EMPTY_FILE,
    FILE_TOO_LARGE,
    FORBIDDEN_KEY,
    IMAGE_TOO_LARGE,
    MALFORMED_EVENT,
    NOT_AN_IMAGE,
    OBJECT_NOT_FOUND,
    TOO_MANY_PAGES,
    TRUNCATED_IMAGE,
    UNKNOWN_SCHEMA_VERSION,
    UNSUPPORTED_PDF,
)
from socratext.privacy import luhn_ok
from socratext.settings import Settings
from socratext.storage import ObjectStore
from streams.events import dumps, now_iso
from streams.topics import DEADLETTER, EXTRACTED, REVIEW
from tests.streamkit import NONCE, Worker, listen, receipt_images

WAIT_S = 150.0
MISSING_BUCKET = "receipts-archive"  # in the worker's allow-list, but no such bucket in the store
# Credentials the worker is given: they must never show up in its log or in an event.
KAFKA_PASSWORD = f"kafka-pw-{NONCE}-do-not-log"
SSL_KEY_PASSWORD = f"tls-key-pw-{NONCE}-do-not-log"


def _luhn_complete(prefix: str) -> str:
    return next(prefix + d for d in "0123456789" if luhn_ok(prefix + d))


PAN = _luhn_complete("497010" + NONCE.encode().hex()[:9].translate(str.maketrans("abcdef", "123456")))
PAN_SPACED = " ".join(PAN[i:i + 4] for i in range(0, 16, 4))


# --------------------------------------------------------------------------------------- input makers


def _good_jpeg(base: int) -> bytes:
    return receipt_images(1, base=base)[0][1]


def _cut(data: bytes, fraction: float) -> bytes:
    return data[:int(len(data) * fraction)]


def _png(size: tuple[int, int] = (400, 300)) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise(size, 60).save(buf, "PNG")  # noise: a PNG whose data does not compress away
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def decompression_bomb(side: int = 15_000) -> bytes:
    """A valid 1-bit PNG of side x side pixels (225 megapixels, 28 MB decoded) in ~30 KB."""
    row = b"\x00" * (1 + (side + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row * 1000) for _ in range(side // 1000)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def big_bmp(n_bytes: int = 50 * 1024 * 1024) -> bytes:
    """A real 24-bit BMP of about `n_bytes` (a 50 MB scan saved uncompressed): header + pixel rows."""
    side = int((n_bytes / 3) ** 0.5) // 4 * 4
    pixels = side * side * 3
    header = b"BM" + struct.pack("<IHHI", 54 + pixels, 0, 0, 54) + struct.pack(
        "<IiiHHIIiiII", 40, side, side, 1, 24, 0, pixels, 2835, 2835, 0, 0)
    return header + bytes(pixels)


def pdf_pages(n: int) -> bytes:
    pdf = pdfium.PdfDocument.new()
    try:
        for _ in range(n):
            pdf.new_page(227, 600)  # an 80 mm receipt roll page
        buf = io.BytesIO()
        pdf.save(buf)
        return buf.getvalue()
    finally:
        pdf.close()


def tiff_frames(n: int) -> bytes:
    frames = [Image.new("L", (8, 8), i % 255) for i in range(n)]
    buf = io.BytesIO()
    frames[0].save(buf, "TIFF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


def pan_receipt() -> bytes:
    """A clean receipt that prints a full card number (the kind of slip PCI DSS forbids keeping)."""
    img = Image.new("RGB", (760, 620), "white")
    draw = ImageDraw.Draw(img)
    for y, line in enumerate(["SUPERMARCHE TEST", "21/11/2026 10:42", "PAIN 1,20", "TOTAL 12,50 EUR",
                              f"CB {PAN_SPACED}", f"REF {NONCE}"]):
        draw.text((40, 40 + 90 * y), line, fill="black", font_size=40)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    """One row: how the input reaches the worker and what must come of it.

    kind: "file" = object in the store + our upload event (key/bucket/content_type overridable);
    "event" = raw bytes on receipts.uploaded; "ocr" = raw bytes on receipts.ocr (stage 2's input).
    make(tag) gives the file or event bytes; `tag` is also the receipt id, or is written into the
    event, so the dead letter can be matched to its row. code None = must come out extracted.
    """

    name: str
    kind: str
    make: Callable[[str], bytes]
    code: str | None
    stage: str = "ocr"
    content_type: str = "image/jpeg"
    key: Callable[[str], str] | None = None
    bucket: str | None = None


def _upload(tag: str, **over: Any) -> bytes:
    doc = {"schema_version": 1, "receipt_id": tag, "bucket": "receipts", "key": f"uploads/{tag}.jpg",
           "uploaded_at": now_iso(), "content_type": "image/jpeg"}
    doc.update(over)
    return dumps({k: v for k, v in doc.items() if v is not ...})


def _notification(tag: str, raw_key: str) -> bytes:
    return dumps({"EventName": "s3:ObjectCreated:Put", "Key": f"receipts/{raw_key}", "Records": [{
        "eventVersion": "2.0", "eventSource": "minio:s3", "eventTime": now_iso(),
        "eventName": "s3:ObjectCreated:Put",
        "s3": {"bucket": {"name": "receipts"}, "object": {"key": raw_key, "size": 10, "eTag": tag}}}]})


def _ocr_event(tag: str, **over: Any) -> bytes:
    doc = {"schema_version": 1, "receipt_id": tag, "source": {"bucket": "receipts", "key": "uploads/x.jpg"},
           "uploaded_at": now_iso(), "page": {"width": 100, "height": 100, "words": []}}
    doc.update(over)
    return dumps({k: v for k, v in doc.items() if v is not ...})


def _page(texts: list[str], per_line: int = 100_000) -> dict[str, Any]:
    return {"width": 1000, "height": 1000, "words": [
        {"text": w, "box": [i % 990, i // per_line, i % 990 + 9, i // per_line + 9], "line_id": i // per_line}
        for i, w in enumerate(texts)]}


CASES = [
    Case("not an image (text file named .jpg)", "file", lambda t: f"just some text {t}\n".encode() * 50,
         NOT_AN_IMAGE),
    Case("HTML page announced as image/jpeg", "file", lambda t: f"<html><body>{t}</body></html>".encode(),
         NOT_AN_IMAGE),
    Case("SVG image (vector formats are not decoded)", "file", lambda t: (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text>{t}</text></svg>').encode(),
         NOT_AN_IMAGE, content_type="image/svg+xml"),
    Case("truncated JPEG (cut at 60 %)", "file", lambda t: _cut(_good_jpeg(7400), 0.6), TRUNCATED_IMAGE),
    Case("truncated PNG (cut at 50 %)", "file", lambda t: _cut(_png(), 0.5), TRUNCATED_IMAGE,
         content_type="image/png"),
    Case("PNG cut inside its header", "file", lambda t: _png()[:20], TRUNCATED_IMAGE,
         content_type="image/png"),
    Case("0 bytes", "file", lambda t: b"", EMPTY_FILE),
    Case("decompression bomb (PNG 15000x15000 in 30 KB)", "file", lambda t: decompression_bomb(),
         IMAGE_TOO_LARGE, content_type="image/png"),
    Case("50 MB image (BMP)", "file", lambda t: big_bmp(), FILE_TOO_LARGE, content_type="image/bmp"),
    Case("PDF with 200 pages", "file", lambda t: pdf_pages(200), TOO_MANY_PAGES,
         content_type="application/pdf"),
    Case("TIFF with 200 frames", "file", lambda t: tiff_frames(200), TOO_MANY_PAGES,
         content_type="image/tiff"),
    Case("corrupt PDF", "file", lambda t: b"%PDF-1.7\n" + t.encode() + b"\n%%EOF", UNSUPPORTED_PDF,
         content_type="application/pdf"),
    Case("wrong content type (JPEG receipt announced as application/pdf)", "file",
         lambda t: _good_jpeg(7410), None, content_type="application/pdf"),
    Case("object missing from the bucket", "event", lambda t: _upload(t, key=f"uploads/missing-{t}.jpg"),
         OBJECT_NOT_FOUND),
    Case("event that is not JSON", "event", lambda t: f'{{"tag": "{t}", oops'.encode(), MALFORMED_EVENT),
    Case("event that is a JSON array", "event", lambda t: f'["{t}"]'.encode(), MALFORMED_EVENT),
    Case("JSON nested 100 000 deep", "event", lambda t: f'["{t}",'.encode() + b"[" * 100_000,
         MALFORMED_EVENT),
    Case("JSON missing fields (no key, no uploaded_at)", "event",
         lambda t: _upload(t, key=..., uploaded_at=...), MALFORMED_EVENT),
    Case("unknown schema version (99)", "event", lambda t: _upload(t, schema_version=99),
         UNKNOWN_SCHEMA_VERSION),
    Case("key with ../", "event", lambda t: _upload(t, key="uploads/../../etc/passwd"), FORBIDDEN_KEY),
    Case("key with ../ and a card number in it", "event",
         lambda t: _upload(t, key=f"../cards/{PAN_SPACED}.jpg"), FORBIDDEN_KEY),
    Case("S3 notification with URL-encoded ../", "event",
         lambda t: _notification(t, "incoming/%2E%2E/%2E%2E/secret.jpg"), FORBIDDEN_KEY),
    Case("bucket not in the allow-list", "event", lambda t: _upload(t, bucket="customer-secrets"),
         FORBIDDEN_KEY),
    Case("allowed bucket that does not exist", "event", lambda t: _upload(t, bucket=MISSING_BUCKET),
         OBJECT_NOT_FOUND),
    Case("huge string (900 KB receipt_id)", "event",
         lambda t: f'{{"tag": "{t}", "schema_version": 1, "receipt_id": "{"x" * 900_000}"}}'.encode(),
         MALFORMED_EVENT),
    Case("huge key (2000 characters)", "event", lambda t: _upload(t, key="uploads/" + "k" * 2000),
         FORBIDDEN_KEY),
    Case("invalid UTF-8 in the event", "event",
         lambda t: f'{{"tag": "{t}", "key": "'.encode() + b"\xff\xfe\"}", MALFORMED_EVENT),
    Case("S3 notification key with invalid UTF-8 (%ff)", "event",
         lambda t: _notification(t, "incoming/%ff%fe.jpg"), MALFORMED_EVENT),
    Case("OCR event without its page", "ocr", lambda t: _ocr_event(t, page=...), MALFORMED_EVENT, "extract"),
    Case("OCR event with boxes that are not numbers", "ocr", lambda t: _ocr_event(t, page={
        "width": 10, "height": 10, "words": [{"text": "x", "box": ["a", "b", "c", "d"]}]}), MALFORMED_EVENT,
         "extract"),
    # Huge strings inside a well-formed OCR event: before the page limits (streams.events.MAX_*), each
    # of these kept the extraction stage busy for minutes (field parsing is not linear on them).
    Case("OCR event with one 100 KB word", "ocr", lambda t: _ocr_event(t, page=_page(["12,50 " * 17_000])),
         MALFORMED_EVENT, "extract"),
    Case("OCR event with 12 000 amounts on one line", "ocr",
         lambda t: _ocr_event(t, page=_page(["12,50"] * 12_000)), MALFORMED_EVENT, "extract"),
]


# ------------------------------------------------------------------------------------------- plumbing


@pytest.fixture(scope="module")
def worker(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = Worker(stack, tmp_path_factory.mktemp("bad-input") / "worker.log")
    w.env.update({"SOCRATEXT_S3_ALLOWED_BUCKETS": f"receipts,{MISSING_BUCKET}",
                  "SOCRATEXT_KAFKA_SASL_USERNAME": "socratext-worker",
                  "SOCRATEXT_KAFKA_SASL_PASSWORD": KAFKA_PASSWORD,
                  "SOCRATEXT_KAFKA_SSL_KEY_PASSWORD": SSL_KEY_PASSWORD})
    with w:
        yield w


def _wait(it: Iterator[tuple[str, Any]], stack: Settings, done: Callable[[list], bool],
          seen: list[tuple[str, dict[str, Any]]], wait_s: float = WAIT_S) -> None:
    names = {stack.topic_extracted: EXTRACTED, stack.topic_review: REVIEW, stack.topic_deadletter: DEADLETTER}
    deadline = time.monotonic() + wait_s
    if done(seen):
        return
    for topic, value in it:
        if isinstance(value, dict) and topic in names:
            seen.append((names[topic], value))
            if done(seen):
                return
        if time.monotonic() > deadline:
            return


def _original_text(event: dict[str, Any]) -> str:
    original = event.get("original") or {}
    data = original.get("data", "")
    if original.get("encoding") == "base64":
        data = base64.b64decode(data).decode("utf-8", "replace")
    return data


def _extracted_ids(seen: list[tuple[str, dict[str, Any]]]) -> set[str]:
    return {e["receipt_id"] for t, e in seen if t == EXTRACTED}


@pytest.mark.stack
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*(read_text|open_text) is deprecated:DeprecationWarning")
def test_bad_inputs_get_their_code_and_the_worker_keeps_its_throughput(stack: Settings, worker: Worker,
                                                                        ) -> None:
    store = ObjectStore(stack)
    tags = {case.name: f"bad-{NONCE}-{i:02d}" for i, case in enumerate(CASES)}
    files = {case.name: case.make(tags[case.name]) for case in CASES if case.kind == "file"}
    events = {case.name: case.make(tags[case.name]) for case in CASES if case.kind != "file"}
    keys = {}
    for case in CASES:  # objects are stored before any clock starts: only the worker is timed
        if case.kind == "file":
            keys[case.name] = f"uploads/{tags[case.name]}.bin"
            store.put_bytes(stack.s3_bucket, keys[case.name], files[case.name], case.content_type)

    good = [(name, data) for name, data, _ in receipt_images(9, base=7420)]
    it = listen(stack)
    seen: list[tuple[str, dict[str, Any]]] = []
    producer = make_producer(stack)
    try:
        # Warm-up (first receipt after start pays for lazy loading), then the baseline: good ones alone.
        warm = {r["receipt_id"] for r in upload_files(stack, good[:1], producer=producer)}
        _wait(it, stack, lambda s: _extracted_ids(s) >= warm, seen)
        assert _extracted_ids(seen) >= warm, f"warm-up not extracted:\n{worker.log.read_text()[-3000:]}"
        t0 = time.monotonic()
        alone = {r["receipt_id"] for r in upload_files(stack, good[1:5], producer=producer)}
        _wait(it, stack, lambda s: _extracted_ids(s) >= alone, seen)
        t_alone = time.monotonic() - t0
        assert _extracted_ids(seen) >= alone, "good receipts alone did not all come out"

        # The bad batch, with the same number of good receipts among it (one of them prints a card
        # number, one is the wrong-content-type row): first, in the middle, and last.
        t1 = time.monotonic()
        mixed = {r["receipt_id"] for r in upload_files(stack, good[5:6], producer=producer)}
        for i, case in enumerate(CASES):
            tag = tags[case.name]
            if case.kind == "file":
                producer.send(stack.topic_uploaded, key=tag.encode(), value=_upload(
                    tag, key=keys[case.name], content_type=case.content_type))
            else:
                topic = stack.topic_ocr if case.kind == "ocr" else stack.topic_uploaded
                producer.send(topic, key=tag.encode(), value=events[case.name])
            if i == len(CASES) // 2:
                mixed |= {r["receipt_id"] for r in upload_files(
                    stack, [("pan.jpg", pan_receipt())], producer=producer)}
        producer.flush(30)
        mixed |= {r["receipt_id"] for r in upload_files(stack, good[6:7], producer=producer)}
    finally:
        producer.close(timeout=10)
    good_ids = mixed | {tags[c.name] for c in CASES if c.code is None}
    by_tag = {tags[c.name]: c for c in CASES}

    def case_of(event: dict[str, Any]) -> Case | None:
        if event.get("receipt_id") in by_tag:
            return by_tag[event["receipt_id"]]
        text = _original_text(event)
        return next((c for tag, c in by_tag.items() if tag in text), None)

    def dead(s: list) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for t, e in s:
            c = case_of(e) if t == DEADLETTER else None
            if c is not None:
                out.setdefault(c.name, []).append(e)
        return out

    n_bad = sum(c.code is not None for c in CASES)
    try:
        _wait(it, stack, lambda s: _extracted_ids(s) >= good_ids and len(dead(s)) >= n_bad, seen)
    finally:
        it.close()  # closes the consumer
    t_mixed = time.monotonic() - t1
    got = dead(seen)

    rows = []
    for case in CASES:
        dls = got.get(case.name, [])
        codes = sorted({e["code"] for e in dls})
        stages = sorted({e["stage"] for e in dls})
        outcome = "extracted" if tags[case.name] in _extracted_ids(seen) else (
            "dead-lettered" if dls else "NOTHING")
        rows.append((case.name, ",".join(codes) or "-", ",".join(stages) or "-", outcome))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'input':<{width}}  {'code':<22} {'stage':<8} outcome")
    for r in rows:
        print(f"{r[0]:<{width}}  {r[1]:<22} {r[2]:<8} {r[3]}")
    print(f"good receipts alone: {len(alone)} in {t_alone:.1f} s; with {n_bad} bad inputs: "
          f"{len(good_ids)} good in {t_mixed:.1f} s (ratio {t_mixed / t_alone:.2f})")

    problems = []
    for case in CASES:
        dls = got.get(case.name, [])
        if case.code is None:
            if dls or tags[case.name] not in _extracted_ids(seen):
                problems.append(f"{case.name}: expected extracted, got {[e['code'] for e in dls]}")
            continue
        if {(e["code"], e["stage"]) for e in dls} != {(case.code, case.stage)}:
            problems.append(f"{case.name}: expected {case.code}@{case.stage}, got "
                            f"{[(e['code'], e['stage']) for e in dls]}")
        if tags[case.name] in _extracted_ids(seen):
            problems.append(f"{case.name}: came out extracted")
    assert not problems, "\n".join(problems) + f"\n{worker.log.read_text()[-3000:]}"
    assert _extracted_ids(seen) >= good_ids, f"good receipts lost: {good_ids - _extracted_ids(seen)}"

    # The worker is alive and healthy. (What the bad inputs cost the good ones in time is a benchmark,
    # bench/bench_bad_input.py, not a wall-clock assertion on a shared machine.)
    assert worker.proc is not None and worker.proc.poll() is None
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/healthz", timeout=5) as r:
        assert json.loads(r.read())["status"] == "ok"

    # Privacy: no credential in any event or in the worker's log; no full card number in an output event
    # or the log (a dead letter keeps its *original* input as it came, for replays; its message is masked).
    ids = good_ids | alone | warm
    ours = [(t, json.dumps(e, ensure_ascii=False)) for t, e in seen
            if e.get("receipt_id") in ids or (t == DEADLETTER and case_of(e) is not None)]
    log_text = worker.log.read_text()
    for text in [*(text for _, text in ours), log_text]:
        for secret in (KAFKA_PASSWORD, SSL_KEY_PASSWORD, stack.s3_secret_key.get_secret_value()):
            assert secret not in text, f"a credential leaked: {text[:300]}"
    for text in [*(text for t, text in ours if t != DEADLETTER), log_text]:
        assert PAN not in text.replace(" ", "") and PAN_SPACED not in text, text[:300]
    pan_dl = got["key with ../ and a card number in it"][0]
    assert PAN_SPACED not in pan_dl["message"] and f"**** **** **** {PAN[-4:]}" in pan_dl["message"]
    assert f"**** **** **** {PAN[-4:]}" in log_text  # the log line about that key, masked by the filter
    pan_lines = [" ".join(w["text"] for w in e["page"]["words"]) for t, e in seen
                 if t == REVIEW and e["receipt_id"] in mixed]
    assert any(PAN[-4:] in line and "****" in line for line in pan_lines), \
        "the card-number receipt's review page shows no masked card number (OCR misread it?)"


# ------------------------------------------------- the same table without the stack (fast, every run)


@pytest.mark.parametrize("case", [c for c in CASES if c.code not in (None, OBJECT_NOT_FOUND)],
                         ids=lambda c: c.name)
def test_each_row_is_refused_where_the_worker_refuses_it(case: Case) -> None:
    """The code of each row comes from the function that gives it in the worker (load_images for files,
    the event parsers for events); the rows that need the object store are only in the stack test."""
    from socratext.errors import SocratextError
    from socratext.imaging import load_images
    from streams.events import allowed_buckets, parse_ocr, parse_upload

    data = case.make(f"bad-{NONCE}-unit")
    with pytest.raises(SocratextError) as info:
        if case.kind == "file":
            load_images(data, settings=Settings())
        elif case.kind == "event":
            parse_upload(data, allowed_buckets(f"receipts,{MISSING_BUCKET}"))
        else:
            parse_ocr(data)
    assert info.value.code == case.code, info.value


def test_ocr_page_limits_are_exact() -> None:
    from socratext.errors import SocratextError
    from streams.events import MAX_LINE_WORDS, MAX_PAGE_WORDS, MAX_WORD_CHARS, parse_ocr

    def parse(page: dict[str, Any]) -> int:
        return len(parse_ocr(_ocr_event("r-1", page=page)).page.words)

    assert parse(_page(["1,00"] * MAX_PAGE_WORDS, per_line=MAX_LINE_WORDS)) == MAX_PAGE_WORDS
    assert parse(_page(["x" * MAX_WORD_CHARS])) == 1
    for page in (_page(["1,00"] * (MAX_PAGE_WORDS + 1), per_line=20), _page(["1,00"] * (MAX_LINE_WORDS + 1)),
                 _page(["x" * (MAX_WORD_CHARS + 1)])):
        with pytest.raises(SocratextError) as info:
            parse(page)
        assert info.value.code == MALFORMED_EVENT


_TEXT = st.text(st.sampled_from("0123456789 ,.-/:%€$*xXTVAEURCBSIRET°\u00a0é\t"), max_size=60) | st.text(
    max_size=60)


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_normalisers_give_a_well_formed_value_or_none_on_any_text(text: str) -> None:
    """Field normalisers on whatever an OCR (or a hostile OCR event) can put in a word or line."""
    import datetime as dt

    from socratext.fields import normalize as n

    amount = n.parse_amount(text)
    assert amount is None or re.fullmatch(r"-?\d{1,9}\.\d\d", amount), amount
    date = n.parse_date(text)
    assert date is None or dt.date.fromisoformat(date).isoformat() == date
    time_ = n.parse_time(text)
    assert time_ is None or re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", time_), time_
    siret = n.parse_siret(text)
    assert siret is None or (re.fullmatch(r"\d{14}", siret) and n.siret_is_valid(siret))
    vat = n.parse_vat_number(text)
    assert vat is None or re.fullmatch(r"[A-Z]{2}[0-9A-Z]{2,13}", vat), vat
    rate = n.parse_rate(text)
    assert rate is None or 0 <= float(rate) <= 30
    qty = n.parse_quantity(text)
    assert qty is None or float(qty) > 0
    assert n.parse_currency(text) in (None, "EUR", "MYR", "GBP", "CHF", "USD")
    assert n.parse_payment_method(text) in (None, "card", "cash", "cheque", "meal_voucher")
    for s, e, _ in [*n.find_amounts(text), *n.find_dates(text), *n.find_times(text)]:
        assert 0 <= s < e <= len(text)
