"""Copy one model version from the object store into a local directory (the worker's model registry pull).

    python /app/fetch_model.py s3://receipts/models/layoutlmv3-small/20261125-1 /models/current

Why a separate step (a Kubernetes init container, or a one-shot compose service) instead of letting the
worker read S3 itself: `SOCRATEXT_MODEL` stays a plain local path, so the worker has one loading path in
every environment, and a model version that is missing or incomplete stops the rollout *before* the old
pods are replaced. Rolling back = pointing the URI at the previous version (see docs/operations.md).
Credentials and endpoint come from the same `SOCRATEXT_S3_*` settings the workers use.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

REQUIRED_FILES = ("config.json", "labels.json")
"""A directory without these cannot be loaded by `LayoutModelExtractor.from_pretrained`: refuse it early."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` → ("bucket", "some/prefix/") — the prefix always ends with one slash."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise ValueError(f"expected s3://bucket/prefix, got {uri!r}")
    return parsed.netloc, parsed.path.strip("/") + "/"


def local_path(key: str, prefix: str, dest: Path) -> Path:
    """Where object `key` (under `prefix`) goes inside `dest`; refuses keys that would escape `dest`."""
    if not key.startswith(prefix):
        raise ValueError(f"key {key!r} is not under {prefix!r}")
    rel = PurePosixPath(key[len(prefix):])
    if not rel.parts or rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"unsafe object key {key!r}")
    return dest.joinpath(*rel.parts)


def missing_files(keys: list[str], prefix: str) -> list[str]:
    names = {k[len(prefix):] for k in keys if k.startswith(prefix)}
    return [f for f in REQUIRED_FILES if f not in names]


def fetch(uri: str, dest: Path) -> int:
    """Download every object under the URI into `dest` (replaced atomically); returns the file count."""
    from socratext.settings import get_settings
    from socratext.storage import make_client

    bucket, prefix = parse_s3_uri(uri)
    client = make_client(get_settings())
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    keys = [obj["Key"] for page in pages for obj in page.get("Contents", []) if not obj["Key"].endswith("/")]
    missing = missing_files(keys, prefix)
    if missing:
        raise SystemExit(f"{uri}: not a model directory (missing {', '.join(missing)})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=dest.parent))
    for key in keys:
        target = local_path(key, prefix, tmp)
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, key, str(target))
    (tmp / "SOURCE").write_text(uri + "\n", encoding="utf-8")
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return len(keys)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("uri", help="s3://bucket/prefix of one model version")
    ap.add_argument("dest", type=Path, help="local directory (replaced)")
    args = ap.parse_args(argv)
    n = fetch(args.uri, args.dest)
    print(f"fetched {n} files from {args.uri} into {args.dest}", file=sys.stderr)


if __name__ == "__main__":
    main()
