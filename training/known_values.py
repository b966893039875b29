"""Build the known merchant names and addresses (`socratext.fields.known`) from reviewed values.

    python -m training.known_values --data reviewed:s3 --out known_values.json --s3 models/known_values.json
    python -m training.known_values --data sroie,synthetic:600 --out /tmp/known.json

Sources (comma-separated `--data`):
  reviewed:s3 | reviewed:DIR   the learning loop's labelled records (their reviewed `fields`)
  sroie                        the SROIE training split's key values (never the held-out split)
  synthetic[:N]                the first N training seeds' generated values (cached pages only when
                               `--synth-cached-only`)

The result is a small JSON file; point `SOCRATEXT_KNOWN_VALUES` at it (a path, or the `s3://bucket/key`
written by `--s3 KEY`) and every extraction — CLI, worker, evaluation — corrects misread names and
addresses against it. Values from real receipts stay out of the repository: build the file where the
data lives, as the model registry does for weights.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from socratext.fields.known import KnownValues


def sroie_values(root: Path | None = None) -> Iterator[dict[str, str]]:
    """The SROIE training split's company and address, as written in its key files."""
    from training.datasets import sroie

    root = root or sroie.SROIE_DIR
    for stem in sroie.train_stems(root):
        key = sroie.read_key(stem, root)
        yield {field: str(key[k]) for k, field in sroie.KEY_TO_FIELD.items() if key.get(k)}


def synthetic_values(n: int, cached_only: bool = False) -> Iterator[Mapping[str, str]]:
    """Generated values of the first `n` training seeds (from the page cache when it has them)."""
    from training.datasets import synthetic

    for seed in synthetic.train_seeds(n):
        if cached_only and not synthetic.cache_path(seed).is_file():
            continue
        yield synthetic.load_synthetic(seed).fields


def reviewed_values(spec: str) -> Iterator[Mapping[str, str]]:
    """The reviewed fields of the learning loop's labelled records ("s3" or a directory)."""
    from training.data import load_reviewed

    for page in load_reviewed(spec, log=lambda *a: print(*a, file=sys.stderr)):
        yield page.fields


def build(sources: list[str], *, synth_cached_only: bool = False) -> tuple[KnownValues, dict[str, int]]:
    kv, counts = KnownValues(), {}
    for src in sources:
        name, _, arg = src.partition(":")
        if name == "sroie":
            records: Iterator[Mapping[str, str]] = sroie_values(Path(arg) if arg else None)
        elif name == "synthetic":
            records = synthetic_values(int(arg or 600), synth_cached_only)
        elif name == "reviewed":
            records = reviewed_values(arg or "s3")
        else:
            raise ValueError(f"unknown source {src!r} (sroie, synthetic[:N], reviewed:s3|DIR)")
        before = len(kv)
        n = 0
        for fields in records:
            kv.add_fields(fields)
            n += 1
        counts[src] = n
        print(f"{src}: {n} receipts, {len(kv) - before} new values", file=sys.stderr)
    return kv, counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="reviewed:s3", help="comma-separated sources (see above)")
    ap.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    ap.add_argument("--s3", default=None, metavar="KEY", help="also upload it to s3://<s3_bucket>/KEY")
    ap.add_argument("--synth-cached-only", action="store_true", help="synthetic: cached pages only")
    args = ap.parse_args(argv)

    kv, _ = build([s for s in args.data.split(",") if s], synth_cached_only=args.synth_cached_only)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    kv.save(args.out)
    print(f"{len(kv)} known values -> {args.out}")
    if args.s3:
        from socratext.settings import get_settings
        from socratext.storage import ObjectStore

        settings = get_settings()
        store = ObjectStore(settings)
        store.ensure_bucket(settings.s3_bucket)
        store.put_bytes(settings.s3_bucket, args.s3, kv.dumps(), content_type="application/json")
        print(f"uploaded: s3://{settings.s3_bucket}/{args.s3}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
