"""Known values: a merchant name or address read with OCR mistakes is replaced by the value already known.

Why: on scanned receipts Tesseract gets one or two characters wrong in most long texts ("GARDENTA BAKEBIES
(KL) SDN BLD", "4000 Shah Alam, Sclangor."), and such a field is wrong however well its words were
labelled: on the held-out SROIE receipts that is most of the merchant name and address errors of both the
rules and the layout model. An administration receives receipts from the same shops again and again, so
once a receipt of a shop has been reviewed its name and address are known, and a new reading that is a few
*OCR confusions* away from a known value (I/1/l, O/0, S/5, B/8, a dropped comma) is that value.

The memory is built from reviewed values (`training.known_values`: the learning loop's reviewed receipts,
or a dataset's gold fields) and applied after field assembly (`socratext.pipeline.ExtractStage`), whatever
extractor labelled the words. It never invents a field and never touches a value that differs from every
known one by more than `max_distance` edits per character, nor one whose letters and digits already
equal a known value (the printed punctuation then wins over the stored variant).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from socratext.fields.normalize import fold

FORMAT = "socratext.known-values/1"
TEXT_FIELDS: tuple[str, ...] = ("merchant_name", "merchant_address")

# Pairs Tesseract confuses on receipt fonts: substituting one for the other costs CONFUSION_COST, not 1.
CONFUSABLE: frozenset[frozenset[str]] = frozenset(
    frozenset(p) for p in ("I1", "IL", "L1", "IJ", "O0", "Q0", "D0", "OQ", "S5", "S$", "B8", "BR", "Z2",
                           "G6", "T7", "TI", "EF", "NH", "MH", "UO", "CG", "UV", "VY", "A4", "[I", "]I",
                           "{(", "})", "(C")
)
CONFUSION_COST = 0.4
SEPARATORS = frozenset(" .,;:'-")
SEPARATOR_COST = 0.3  # a comma or space added or lost between lines is the cheapest mistake of all
DIGIT_INDEL_COST = 1.5  # a digit more or less changes a number: more than a letter does a word
SEPARATOR_SUB_COST = 0.15  # "MR, D.1.Y." is closer to "MR. D.I.Y." than to "MR D.I.Y."
JUNK_COST = 0.3  # per character of a short leading/trailing token dropped ("is) Proxi Super", "WELDOM FF")


def _sub_cost(a: str, b: str) -> float:
    if a == b:
        return 0.0
    if a in SEPARATORS and b in SEPARATORS:
        return SEPARATOR_SUB_COST
    if frozenset((a, b)) in CONFUSABLE:
        return CONFUSION_COST
    return 1.0


def _indel_cost(c: str) -> float:
    if c in SEPARATORS:
        return SEPARATOR_COST
    return DIGIT_INDEL_COST if c.isdigit() else 1.0


def ocr_distance(read: str, known: str, limit: float = float("inf")) -> float:
    """Weighted edit distance from what the OCR `read` to a `known` value (case and accents ignored):
    OCR confusions and separators are cheap, other edits cost 1. Returns `inf` as soon as the distance
    must exceed `limit` (most known values are far from a reading; this keeps the lookup fast)."""
    s, t = fold(read), fold(known)
    prev = [0.0]
    for c in t:
        prev.append(prev[-1] + _indel_cost(c))
    for a in s:
        del_a = _indel_cost(a)
        cur = [prev[0] + del_a]
        for j, b in enumerate(t, 1):
            cur.append(min(prev[j] + del_a, cur[j - 1] + _indel_cost(b), prev[j - 1] + _sub_cost(a, b)))
        if min(cur) > limit:
            return float("inf")
        prev = cur
    return prev[-1]


# Letters Tesseract reads for digits and back inside numbers ("145G" for "1456"), and digit pairs it
# confuses on worn prints: the only ways a digit of a known value may differ from the reading's.
_AS_DIGIT = str.maketrans({"O": "0", "Q": "0", "D": "0", "I": "1", "L": "1", "Z": "2", "S": "5", "G": "6",
                           "B": "8"})
DIGIT_CONFUSABLE: frozenset[frozenset[str]] = frozenset(frozenset(p) for p in ("68", "38", "56", "17", "08"))


def _fits(number: str, known: str) -> bool:
    """Is `number` (printed digits) a reading of `known`: same length with look-alike digits confused, or
    one digit dropped from a number of four digits or more ("4000" for "40300")?"""
    def eq(a: str, b: str) -> bool:
        return a == b or frozenset((a, b)) in DIGIT_CONFUSABLE

    if len(number) == len(known):
        return all(eq(a, b) for a, b in zip(number, known, strict=True))
    if len(number) == len(known) - 1 and len(known) >= 4:
        return any(all(eq(a, b) for a, b in zip(number, known[:i] + known[i + 1:], strict=True))
                   for i in range(len(known)))
    return False


def numbers_compatible(read: str, known: str) -> bool:
    """Does every number printed in the reading read one of the known value's, and every number of the
    known value have a reading? Numbers of two digits or more, and a single digit that opens the text
    (an address's house number: "8 BD …" is not "2 QUAI …").

    Why: "12 RUE X" and "13 RUE X" are two shops though one edit apart, and so are "43 QUAI ..." and
    "243 QUAI ...". An OCR drops a digit of a long number and confuses 6/8 or a G for a 6 ("145G" read
    "1456"); it does not read a clean 2 for a 3. Letters glued to a known number count as the digits they
    look like."""
    read_loose, known_loose = _numbers(read, clean=False), _numbers(known, clean=False)
    return (all(any(_fits(n, k) for k in known_loose) for n in _numbers(read, clean=True))
            and all(any(_fits(n, k) for n in read_loose) for k in _numbers(known, clean=True)))


def _numbers(text: str, clean: bool) -> list[str]:
    """Numbers of two digits or more or a leading single digit (`clean`: printed as digits only), or the
    digits of every token that has one, look-alike letters counted ("145G" → "1456")."""
    toks = re.findall(r"[0-9A-Z]+", fold(text))
    if clean:
        return [t for k, t in enumerate(toks) if t.isdigit() and (len(t) >= 2 or k == 0)]
    out: list[str] = []
    for t in toks:
        if any(c.isdigit() for c in t):  # "SS21" is "21" after a symbol the OCR made letters of, or "5521"
            out += {re.sub(r"\D", "", t), re.sub(r"\D", "", t.translate(_AS_DIGIT))}
    return out


def words_compatible(read: str, known: str, max_word_distance: float = 0.4) -> bool:
    """Has every word of the known value (three letters or more) a reading at most `max_word_distance`
    edits per letter away, and every word of the reading (four letters or more) a known word it may be a
    misreading of? Why: "16 IMPASSE LOUIS BLANC" is not a misreading of "16 ROUTE LOUIS BLANC", though
    the two are only 6 edits apart in 34 characters, nor "2 QUAI DE LA REPUBLIQUE" of "8 BD DE LA
    REPUBLIQUE" (every known word of three letters is there); OCR mistakes damage words, they do not swap
    them for other words. Shorter reading words may be a logo's or a line's debris ("is)", "Es")."""
    def covered(words: Iterable[str], by: list[str]) -> bool:
        for w in words:
            limit = max_word_distance * len(w)
            if not any(ocr_distance(b, w, limit) <= limit for b in by):
                return False
        return True

    def letters(w: str) -> int:
        return sum(c.isalpha() for c in w)

    read_words = re.findall(r"[0-9A-Z]+", fold(read))
    known_words = re.findall(r"[0-9A-Z]+", fold(known))
    return (covered({w for w in known_words if letters(w) >= 3}, read_words)
            and covered({w for w in read_words if letters(w) >= 4}, known_words))


def alnum_key(text: str) -> str:
    """Letters and digits only, folded: two spellings with the same key differ in punctuation only."""
    return re.sub(r"[^0-9A-Z]", "", fold(text))


def _trigrams(text: str) -> frozenset[str]:
    s = f" {alnum_key(text)} "
    return frozenset(s[i:i + 3] for i in range(len(s) - 2))


def _is_junk(token: str) -> bool:
    """A token a logo or a registration number leaves around a name: fewer than four letters."""
    return sum(c.isalpha() for c in token) < 4


def _trimmed(text: str, max_drop: int = 2) -> list[tuple[str, float]]:
    """`text`, and `text` without up to `max_drop` junk tokens at either end, each with its cost."""
    toks = text.split()
    out = [(text, 0.0)]
    for i in range(max_drop + 1):
        for j in range(max_drop + 1):
            if (i == 0 and j == 0) or i + j >= len(toks):
                continue
            dropped = toks[:i] + toks[len(toks) - j:]
            if all(_is_junk(t) for t in dropped):
                out.append((" ".join(toks[i:len(toks) - j]), JUNK_COST * sum(len(t) + 1 for t in dropped)))
    return out


@dataclass
class Correction:
    field: str
    read: str
    known: str
    distance: float  # edits per character of the known value


@dataclass
class KnownValues:
    """Values seen in reviewed receipts, per field, with how often each spelling was seen."""

    values: dict[str, Counter[str]] = field(default_factory=dict)
    max_distance: float = 0.2
    margin: float = 0.05  # the runner-up (another name) must be at least this much further away
    candidates: int = 5
    _index: dict[str, list[tuple[str, list[str], frozenset[str]]]] = field(default_factory=dict, repr=False)
    _keys: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)

    # --- building ---

    def add(self, field_name: str, value: str | None, count: int = 1) -> None:
        if field_name not in TEXT_FIELDS or not value or not alnum_key(value):
            return
        self.values.setdefault(field_name, Counter())[re.sub(r"\s+", " ", value).strip()] += count
        self._index.pop(field_name, None)
        self._keys.pop(field_name, None)

    def add_fields(self, fields: Mapping[str, str | None]) -> None:
        for name in TEXT_FIELDS:
            self.add(name, fields.get(name))

    @classmethod
    def from_fields(cls, records: Iterable[Mapping[str, str | None]], **kwargs: float) -> KnownValues:
        kv = cls(**kwargs)  # type: ignore[arg-type]
        for rec in records:
            kv.add_fields(rec)
        return kv

    def __len__(self) -> int:
        return sum(len(c) for c in self.values.values())

    # --- looking up ---

    def _entries(self, field_name: str) -> list[tuple[str, list[str], frozenset[str]]]:
        """(key, its spellings most frequent first, trigrams) per distinct letters-and-digits key."""
        if field_name not in self._index:
            by_key: dict[str, list[tuple[int, str]]] = {}
            for value, n in self.values.get(field_name, Counter()).items():
                by_key.setdefault(alnum_key(value), []).append((-n, value))
            self._index[field_name] = [(k, [v for _, v in sorted(vs)], _trigrams(vs[0][1]))
                                       for k, vs in sorted(by_key.items())]
            self._keys[field_name] = frozenset(by_key)
        return self._index[field_name]

    def correct(self, field_name: str, read: str) -> Correction | None:
        """The known value `read` is a misreading of, or None (unknown, ambiguous, or already right)."""
        entries = self._entries(field_name)
        if not entries or not alnum_key(read):
            return None
        if alnum_key(read) in self._keys[field_name]:
            return None  # already a known value, up to punctuation: keep what is printed
        grams = _trigrams(read)
        ranked = sorted(entries, key=lambda e: -len(grams & e[2]) / max(1, len(grams | e[2])))
        scored: list[tuple[float, int, str]] = []
        readings = _trimmed(read) if field_name == "merchant_name" else [(read, 0.0)]
        for rank, (_, spellings, _) in enumerate(ranked[: self.candidates]):
            # the spelling closest to what is printed: annotators write "MR. D.I.Y." and "MR D.I.Y."
            for spelling in spellings:
                if not (numbers_compatible(read, spelling) and words_compatible(read, spelling)):
                    continue
                limit = (self.max_distance + self.margin) * len(spelling)
                d = min(ocr_distance(r, spelling, limit - cost) + cost for r, cost in readings)
                scored.append((d / max(1, len(spelling)), rank, spelling))
        scored.sort()
        if not scored or scored[0][0] > self.max_distance:
            return None
        best = scored[0][2]
        for d, rank, other in scored[1:]:
            if d - scored[0][0] >= self.margin:
                break
            # two known values fit about as well: unless they are two spellings of one value ("(KL)",
            # "(KI )": annotators' variants), the reading could be either shop, so leave it alone
            if rank != scored[0][1] and ocr_distance(other, best) > self.margin * len(best):
                return None
        return Correction(field_name, read, best, round(scored[0][0], 4))

    # --- storing ---

    def to_dict(self) -> dict[str, object]:
        return {"format": FORMAT, "max_distance": self.max_distance, "margin": self.margin,
                "values": {f: dict(sorted(c.items())) for f, c in sorted(self.values.items())}}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> KnownValues:
        if d.get("format") != FORMAT:
            raise ValueError(f"not a known-values file (format {d.get('format')!r}, expected {FORMAT!r})")
        values = d.get("values") or {}
        assert isinstance(values, dict)
        return cls(values={f: Counter(v) for f, v in values.items() if f in TEXT_FIELDS},
                   max_distance=float(d.get("max_distance", 0.2)),  # type: ignore[arg-type]
                   margin=float(d.get("margin", 0.05)))  # type: ignore[arg-type]

    def dumps(self) -> bytes:
        return (json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n").encode()

    @classmethod
    def loads(cls, data: bytes | str) -> KnownValues:
        return cls.from_dict(json.loads(data))

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.dumps())

    @classmethod
    def load(cls, path: str | Path) -> KnownValues:
        return cls.loads(Path(path).read_bytes())
