"""Card-number (PAN) masking and log redaction (socratext.privacy), and where the pipeline applies them."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from socratext.document import OcrPage, Word, WordLabel
from socratext.privacy import (
    CARD_BRANDS,
    REDACTED,
    RedactingFilter,
    card_brand,
    install_log_redaction,
    is_pan,
    luhn_ok,
    mask_obj,
    mask_page,
    mask_pans,
    mask_words,
    secret_values,
)
from socratext.settings import Settings


def complete(prefix: str) -> str:
    """`prefix` + the one check digit that makes it Luhn-valid."""
    return next(prefix + d for d in "0123456789" if luhn_ok(prefix + d))


def group(digits: str, sizes: tuple[int, ...], sep: str = " ") -> str:
    out, pos = [], 0
    for n in sizes:
        out.append(digits[pos:pos + n])
        pos += n
    return sep.join(out)


VISA = "4111111111111111"
MASTERCARD = "5555555555554444"
MASTERCARD_2 = "2223003122003222"
AMEX = "378282246310005"
DINERS_14 = "30569309025904"
DISCOVER = "6011111111111117"
JCB = "3530111333300000"
SIRET = "73282932000074"  # a real SIRET (Luhn-valid, like all of them)


@pytest.mark.parametrize("pan", [VISA, MASTERCARD, MASTERCARD_2, AMEX, DISCOVER, JCB, "4222222222222"])
def test_test_card_numbers_are_pans(pan: str) -> None:
    assert luhn_ok(pan) and card_brand(pan) is not None and is_pan(pan)
    assert mask_pans(f"CARTE {pan}") == "CARTE " + "*" * (len(pan) - 4) + pan[-4:]


@pytest.mark.parametrize(("text", "masked"), [
    ("CB 4111 1111 1111 1111", "CB **** **** **** 1111"),
    ("4111-1111-1111-1111 EXP 12/28", "****-****-****-1111 EXP 12/28"),
    ("AMEX 3782 822463 10005", "AMEX **** ****** *0005"),
    ("DINERS 3056 930902 5904", "DINERS **** ****** 5904"),
    ("N°4111111111111111.", "N°************1111."),
    ("2 x 4111 1111 1111 1111", "2 x **** **** **** 1111"),
    ("12 4111 1111 1111 1111", "12 **** **** **** 1111"),  # a quantity glued in front by the OCR line
    ("4111 1111 1111 1111 5555 5555 5555 4444", "**** **** **** 1111 **** **** **** 4444"),
])
def test_masking_keeps_separators_and_the_last_four(text: str, masked: str) -> None:
    assert mask_pans(text) == masked
    assert len(mask_pans(text)) == len(text)


@pytest.mark.parametrize("text", [
    f"SIRET {SIRET}", SIRET, "SIRET 732 829 320 00074", "732 829 320 00074", "SIREN 732 829 320",
    "SIRET: 30569309025904",  # a Luhn-valid 14-digit number with a Diners prefix, written as a SIRET
    "30569309025904", "305 693 090 25904", "SIRET N° 3056 930902 5904",
    "FR 40 303 265 045", "FR40303265045",  # VAT numbers
    "4111111111111112",  # not Luhn-valid
    "9111111111111111", "1234567812345670",  # Luhn-valid, but no card network issues these
    "41111111111111113",  # Visa is 13, 16 or 19 digits, not 17
    "TOTAL 1 234,56 EUR", "21/11/2026 10:42", "21-11-2026", "TEL 01 23 45 67 89", "CARTE ************1111",
    "TVA 20,00% 45,12 9,02", "A0000000421010", "", "22-01-1990 01-03-1999",  # Luhn-valid, Mir-like
])
def test_company_numbers_amounts_and_non_cards_are_kept(text: str) -> None:
    assert mask_pans(text) == text


def test_a_siret_is_luhn_valid_which_is_why_luhn_alone_is_not_enough() -> None:
    assert luhn_ok(SIRET) and luhn_ok("30569309025904")
    assert not is_pan(SIRET) and not is_pan("30569309025904")  # contiguous 14 digits: a SIRET's shape
    assert is_pan("30569309025904", [4, 6, 4])  # ...but the same digits printed 4-6-4 are a Diners card


def test_brand_table_lengths() -> None:
    assert {b for b, _, _ in CARD_BRANDS} >= {"visa", "mastercard", "amex", "diners", "discover", "jcb"}
    assert all(13 <= n <= 19 for _, _, lengths in CARD_BRANDS for n in lengths)
    assert card_brand("5" + "0" * 15) == "maestro" and card_brand("51" + "0" * 14) == "mastercard"
    assert card_brand("2721" + "0" * 12) is None  # past the Mastercard 2-series


def test_mask_words_across_ocr_words() -> None:
    assert mask_words(["CB", "4111", "1111", "1111", "1111", "12,50"]) == \
        ["CB", "****", "****", "****", "1111", "12,50"]
    assert mask_words(["PAIN", "1,20"]) == ["PAIN", "1,20"]
    assert mask_words([]) == []


def test_mask_page_line_by_line_keeps_boxes() -> None:
    words = [Word("CB", (0, 0, 10, 10), 0.9, 0), *[Word(t, (20 * i, 0, 20 * i + 15, 10), 0.8, 0)
                                                  for i, t in enumerate(["4111", "1111", "1111"], 1)],
             Word("1111", (0, 20, 10, 30), 0.9, 1)]  # the last group on another line: not one number
    page = OcrPage(words, 100, 50)
    assert mask_page(page) is page
    words[3] = Word("1111", (80, 0, 95, 10), 0.8, 0)
    words.insert(4, Word("1111", (100, 0, 115, 10), 0.8, 0))
    masked = mask_page(OcrPage(words, 100, 50))
    assert [w.text for w in masked.words] == ["CB", "****", "****", "****", "1111", "1111"]
    assert [w.box for w in masked.words] == [w.box for w in words]
    assert [w.confidence for w in masked.words] == [w.confidence for w in words]


def test_mask_obj() -> None:
    doc = {"a": [f"x {VISA}", 3, None], "siret": SIRET, VISA: {"t": (VISA,)}}
    out = mask_obj(doc)
    assert out == {"a": ["x ************1111", 3, None], "siret": SIRET,
                   "************1111": {"t": ("************1111",)}}


# ------------------------------------------------------------------------------------ property tests

_BRAND_PREFIXES = [("4", 16), ("4", 13), ("4", 19), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16),
                   ("34", 15), ("37", 15), ("36", 16), ("6011", 16), ("65", 19), ("3528", 16), ("62", 17),
                   ("50", 18), ("2200", 16)]
_LAYOUTS = {13: [(13,), (4, 4, 5)], 15: [(15,), (4, 6, 5)], 16: [(16,), (4, 4, 4, 4)],
            17: [(17,), (4, 4, 4, 5)], 18: [(18,), (4, 4, 4, 6)], 19: [(19,), (4, 4, 4, 4, 3)]}
_AROUND = st.text(alphabet="ABCXYZ abc:/*.,€()\n", max_size=12)  # no digit, no SIRET keyword


@st.composite
def pans(draw: st.DrawFn) -> tuple[str, str]:
    """(digits, as printed): a Luhn-valid number of a real network, in a layout cards are printed in."""
    prefix, length = draw(st.sampled_from(_BRAND_PREFIXES))
    body = draw(st.text(alphabet="0123456789", min_size=length - len(prefix) - 1,
                        max_size=length - len(prefix) - 1))
    digits = complete(prefix + body)
    sizes = draw(st.sampled_from(_LAYOUTS[length]))
    return digits, group(digits, sizes, draw(st.sampled_from([" ", "-"])))


@settings(max_examples=300, deadline=None)
@given(pans(), _AROUND, _AROUND)
def test_a_valid_pan_never_survives(pan: tuple[str, str], before: str, after: str) -> None:
    digits, printed = pan
    text = before + printed + after
    masked = mask_pans(text)
    assert len(masked) == len(text)
    assert digits not in re.sub(r"[^0-9*]", "", masked)
    assert re.sub(r"[^0-9]", "", masked) == digits[-4:]  # exactly the last four digits are left
    assert masked.count("*") - text.count("*") == len(digits) - 4


@settings(max_examples=300, deadline=None)
@given(pans(), st.lists(st.sampled_from(["CB", "CARTE", "EXP", "12/28", "12,50", "TOTAL", "EUR"]),
                        max_size=4))
def test_a_pan_split_over_ocr_words_never_survives(pan: tuple[str, str], others: list[str]) -> None:
    digits, printed = pan
    words = [*others, *printed.replace("-", " ").split(" "), *others]
    masked = mask_words(words)
    assert len(masked) == len(words) and [len(w) for w in masked] == [len(w) for w in words]
    assert digits not in "".join(re.sub(r"[^0-9]", "", w) for w in masked)


@st.composite
def sirets(draw: st.DrawFn) -> str:
    lead = draw(st.sampled_from(["", "30", "36", "38", "39", "4", "5", "6"]))  # card-like prefixes too
    body = draw(st.text(alphabet="0123456789", min_size=13 - len(lead), max_size=13 - len(lead)))
    digits = complete(lead + body)
    assume(digits[0] != "0")
    return digits


@settings(max_examples=300, deadline=None)
@given(sirets(), st.sampled_from([(14,), (3, 3, 3, 5)]), st.sampled_from(["", "SIRET ", "SIRET : ",
                                                                            "N° SIRET "]), _AROUND, _AROUND)
def test_a_siret_is_never_masked(siret: str, sizes: tuple[int, ...], keyword: str, before: str,
                                 after: str) -> None:
    assert luhn_ok(siret)  # a SIRET is Luhn-valid by design...
    text = f"{before} {keyword}{group(siret, sizes)} {after}"
    assert mask_pans(text) == text  # ...and still never mistaken for a card
    assert mask_pans(siret[:9]) == siret[:9]  # nor its SIREN


_DATES = st.builds(lambda d, m, y, sep: f"{d:02d}{sep}{m:02d}{sep}{y}", st.integers(1, 31),
                   st.integers(1, 12), st.integers(1990, 2030), st.sampled_from(["/", ".", "-"]))
_AMOUNTS = st.builds(lambda e, c, sep, thousands: f"{e:,}".replace(",", thousands) + f"{sep}{c:02d}",
                     st.integers(0, 9_999_999), st.integers(0, 99), st.sampled_from([",", "."]),
                     st.sampled_from([" ", "", "\u202f"]))
_TIMES = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_DATES, _AMOUNTS, _TIMES, st.sampled_from(["TOTAL", "TVA", "EUR", "x", "%"])),
                max_size=8))
def test_dates_amounts_and_times_are_untouched(tokens: list[str]) -> None:
    text = " ".join(tokens)
    assert mask_pans(text) == text


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789 -/.,:*ASIRETN°"), max_size=80))
def test_any_text_only_digits_become_stars_and_no_contiguous_pan_is_left(text: str) -> None:
    masked = mask_pans(text)
    assert len(masked) == len(text)
    assert all(a == b or (a.isdigit() and b == "*") for a, b in zip(text, masked, strict=True))
    assume("SIRE" not in text.upper())  # digits after a SIRET/SIREN keyword are kept by design
    for run in re.findall(r"[0-9]+", masked):
        assert not is_pan(run), (text, masked)


# ------------------------------------------------------------------------------------------------ logs


def _logger(flt: RedactingFilter, formatter: logging.Formatter | None = None,
            ) -> tuple[logging.Logger, io.StringIO]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(formatter or logging.Formatter("%(message)s|%(receipt_id)s"))
    handler.addFilter(flt)
    logger = logging.getLogger(f"test-privacy-{id(flt)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, buf


def test_log_filter_masks_pans_and_secrets_in_message_args_extras_and_tracebacks() -> None:
    logger, buf = _logger(RedactingFilter(["s3cr3t-value"]))
    logger.info("card %s key %s", "4111 1111 1111 1111", "s3cr3t-value", extra={"receipt_id": f"r {VISA}"})
    try:
        raise ValueError(f"bad card {VISA} with s3cr3t-value")
    except ValueError:
        logger.exception("failed", extra={"receipt_id": "r1"})
    out = buf.getvalue()
    assert "4111 1111 1111 1111" not in out and VISA not in out and "s3cr3t-value" not in out
    assert "card **** **** **** 1111 key [REDACTED]|r ************1111" in out
    assert "ValueError: bad card ************1111 with [REDACTED]" in out
    assert REDACTED == "[REDACTED]"


def test_worker_json_logs_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    from streams.worker import configure_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("info", Settings(s3_secret_key="minio-secret-123",
                                           kafka_sasl_password="kafka-pw-456"))
        log = logging.getLogger("streams.test")
        log.info("store %s / kafka %s", "minio-secret-123", "kafka-pw-456", extra={"code": f"x{VISA}"})
        try:
            raise RuntimeError(f"CB {VISA}")
        except RuntimeError:
            log.warning("boom", exc_info=True)
    finally:
        root.handlers[:], root.level = saved
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    text = json.dumps(lines)
    assert "minio-secret-123" not in text and "kafka-pw-456" not in text and VISA not in text
    assert lines[-2]["msg"] == "store [REDACTED] / kafka [REDACTED]"
    assert lines[-2]["code"] == "x************1111"
    assert "RuntimeError: CB ************1111" in lines[-1]["exc"]


def test_install_log_redaction_on_a_bare_root_and_secret_values() -> None:
    logger = logging.getLogger("test-privacy-bare")
    logger.handlers[:] = []
    logger.propagate = False
    try:
        flt = install_log_redaction(Settings(kafka_sasl_password="pw-abcdef"), logger)
        assert len(logger.handlers) == 1 and flt in logger.handlers[0].filters
        install_log_redaction(Settings(), logger)  # idempotent: one filter per handler
        assert sum(isinstance(f, RedactingFilter) for f in logger.handlers[0].filters) == 1
    finally:
        logger.handlers[:] = []
    values = secret_values(Settings(s3_secret_key="abcd1234", kafka_sasl_password="",
                                    kafka_ssl_key_password="xy"))
    assert values == ["abcd1234"]  # empty and very short values are not redacted (they would be everywhere)


# ------------------------------------------------------------------------------- where it is applied


def test_stream_events_carry_no_card_number() -> None:
    from streams import events as ev

    up = ev.UploadEvent("r-1", "receipts", "uploads/a.jpg", "2026-11-25T10:00:00.000Z")
    words = [Word(t, (10 * i, 0, 10 * i + 8, 10), 0.9, 0) for i, t in enumerate(["CB", *VISA[:8].split(),
                                                                                  VISA[8:]])]
    page = OcrPage(words, 200, 20)
    ocr = ev.ocr_event(up, page, 1, 1, {})
    assert [w["text"] for w in ocr["page"]["words"]] == ["CB", "********", "****1111"]
    receipt = {"receipt_id": "r-1", "source": up.source,
               "fields": {"payment_method": {"value": "card", "text": f"CB {VISA}"}},
               "items": [{"name": f"CARTE {VISA}"}], "vat_lines": []}
    out = ev.extracted_event(receipt, up.uploaded_at)
    assert VISA not in json.dumps(out) and out["items"][0]["name"] == "CARTE ************1111"
    review = ev.review_event(out, page, [WordLabel("O")] * 3)
    assert VISA not in json.dumps(review)
    dl = ev.deadletter_event(b"{}", stage="ocr", code="forbidden_key", message=f"key {VISA}", receipt_id=None)
    assert dl["message"] == "key ************1111"


def test_assembled_fields_keep_the_siret_and_mask_card_numbers() -> None:
    from socratext.fields.assemble import assemble_receipt

    siret = complete("3625218790003")  # Luhn-valid, 14 digits, and a Diners-like "36" prefix
    lines = [["SIRET", *group(siret, (3, 3, 3, 5)).split()], ["CB", "4111", "1111", "1111", "1111"]]
    words, labels = [], []
    for y, line in enumerate(lines):
        for x, t in enumerate(line):
            words.append(Word(t, (60 * x, 30 * y, 60 * x + 50, 30 * y + 20), 0.95, y))
            labels.append(WordLabel("siret" if y == 0 and x else "payment_method" if y == 1 else "O", 0.9))
    rec = assemble_receipt(OcrPage(words, 400, 100), labels, receipt_id="r", source={"path": "x"},
                           model={"name": "t", "version": "0"}).export()
    text = json.dumps(rec)
    assert "4111 1111 1111 1111" not in text and VISA not in text
    assert rec["fields"]["siret"]["value"] == siret
    assert rec["fields"]["siret"]["text"].replace(" ", "") == siret
