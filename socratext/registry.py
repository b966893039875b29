"""Model registry in the object store: immutable versions, a movable `current` pointer, verified fetches.

Layout under `s3://<bucket>/<prefix>` (default `models/`)::

    <name>/<version>/<relative path>    every file of the model directory (save_model_dir's output)
    <name>/<version>/manifest.json      {name, version, created_at, metrics, files: {rel: sha256}}
    <name>/current.json                 {version, previous, updated_at}

Why a manifest written last: S3 has no transactions, so a version *exists* only once its manifest is
there. A publisher that dies half-way leaves files without a manifest, which every reader ignores; the
manifest is written with `If-None-Match: *`, so two publishers of the same version cannot both win.
The manifest's sha256 per file lets `fetch` refuse a file that was damaged or clobbered after publish.

Why a pointer file instead of "the newest version": promoting and rolling back must be a single small
write that workers pick up (streams/agents/extract.py polls it between batches), independent of when a
version was published; `previous` makes a rollback one command without remembering anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from socratext import errors
from socratext.errors import SocratextError
from socratext.settings import Settings
from socratext.storage import ObjectStore, check_key, map_error
from socratext.timestamps import now_iso

MANIFEST = "manifest.json"
CURRENT = "current.json"
REGISTRY_SCHEME = "registry:"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
"""Names and versions are single key segments: no '/', no '@' (the `name@version` separator), no '..'."""

# Registry error codes (CLI exit messages; they never reach the dead-letter topic).
VERSION_EXISTS = "model_version_exists"
CHECKSUM_MISMATCH = "model_checksum_mismatch"
INVALID_NAME = "invalid_model_name"
NO_PREVIOUS = "no_previous_version"
MANIFEST_INVALID = "model_manifest_invalid"


def check_name(value: str, what: str = "name") -> str:
    if not isinstance(value, str) or not NAME_RE.match(value) or value in (".", ".."):
        raise SocratextError(INVALID_NAME, f"model {what} {value!r} must match {NAME_RE.pattern}")
    return value


def parse_model_ref(spec: str) -> tuple[str, str | None] | None:
    """`"registry:name"` → (name, None) (follow `current`), `"registry:name@ver"` → (name, ver) (pinned);
    anything else → None (not a registry reference)."""
    if not isinstance(spec, str) or not spec.startswith(REGISTRY_SCHEME):
        return None
    ref = spec[len(REGISTRY_SCHEME):]
    name, sep, version = ref.partition("@")
    check_name(name)
    if sep:
        check_name(version, "version")
        return name, version
    return name, None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/socratext/models` (default `~/.cache/socratext/models`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "socratext" / "models"


def local_files(local_dir: Path) -> dict[str, Path]:
    """Relative POSIX path → file, for every regular file under `local_dir` (sorted). A top-level
    `manifest.json` is the registry's own (a fetched directory has one) and is not a model file."""
    out = {}
    for p in sorted(local_dir.rglob("*")):
        if p.is_file():
            rel = p.relative_to(local_dir).as_posix()
            if rel != MANIFEST:
                out[rel] = p
    return out


def _safe_rel(rel: str) -> str:
    """A manifest's relative path must stay inside the version directory (and inside the local cache)."""
    check_key(rel)
    if "\\" in rel or rel.startswith("/"):
        raise SocratextError(MANIFEST_INVALID, f"manifest file path {rel!r} is not a plain relative path")
    return rel


@dataclass(frozen=True)
class ModelVersion:
    """One published, immutable model version (the content of its manifest.json)."""

    name: str
    version: str
    created_at: str
    metrics: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256

    def to_json(self) -> bytes:
        return (json.dumps({"format": 1, **asdict(self)}, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes | str, where: str = "manifest") -> ModelVersion:
        try:
            doc = json.loads(data)
            mv = cls(name=str(doc["name"]), version=str(doc["version"]), created_at=str(doc["created_at"]),
                     metrics={str(k): float(v) for k, v in (doc.get("metrics") or {}).items()},
                     files={str(k): str(v) for k, v in doc["files"].items()})
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SocratextError(MANIFEST_INVALID, f"{where} is not a valid manifest: {exc}") from None
        for rel in mv.files:
            _safe_rel(rel)
        return mv


class ModelRegistry:
    """Publish, list, promote, roll back and fetch model versions in one bucket of the object store."""

    def __init__(self, store: ObjectStore, bucket: str, prefix: str = "models/") -> None:
        self.store = store
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelRegistry:
        """The registry bucket is allowed even when it is not in `s3_allowed_buckets` (that list guards
        what upload *events* may make a worker read; the registry bucket comes from configuration)."""
        bucket = settings.model_registry_bucket or settings.s3_bucket
        allowed = settings.s3_allowed_buckets
        if bucket not in {b.strip() for b in allowed.split(",")}:
            settings = settings.model_copy(update={"s3_allowed_buckets": f"{allowed},{bucket}"})
        return cls(ObjectStore(settings), bucket)

    def __repr__(self) -> str:
        return f"ModelRegistry(s3://{self.bucket}/{self.prefix})"

    # --- keys -------------------------------------------------------------------------------------------
    def _key(self, name: str, *parts: str) -> str:
        return self.prefix + "/".join((name, *parts))

    def uri(self, name: str, version: str) -> str:
        return f"s3://{self.bucket}/{self._key(name, version)}/"

    # --- low-level object access (streaming, no size cap: model weights are large) ------------------
    def _get(self, key: str) -> bytes | None:
        """An object's bytes, or None when it does not exist (other failures raise)."""
        try:
            return self.store.get_bytes(self.bucket, key, max_bytes=16 * 1024 * 1024)
        except SocratextError as exc:
            if exc.code == errors.OBJECT_NOT_FOUND:
                return None
            raise

    def _client_call(self, key: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise map_error(exc, self.bucket, key) from exc

    def _put_new(self, key: str, data: bytes) -> bool:
        """Create `key` only if absent (S3 conditional write); False when it already existed."""
        self.store._check_bucket(self.bucket)
        check_key(key)
        try:
            self.store.client.put_object(Bucket=self.bucket, Key=key, Body=data,
                                         ContentType="application/json", IfNoneMatch="*")
            return True
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                return False
            if code == "NotImplemented" or status == 501:  # a store without conditional PUT
                if self._get(key) is not None:
                    return False
                self.store.put_bytes(self.bucket, key, data, "application/json")
                return True
            raise map_error(exc, self.bucket, key) from exc
        except BotoCoreError as exc:
            raise map_error(exc, self.bucket, key) from exc

    def _subdirs(self, prefix: str) -> list[str]:
        """The next key segment of every key under `prefix` (S3 "directories")."""
        self.store._check_bucket(self.bucket)
        out: list[str] = []
        try:
            pages = self.store.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/")
            for page in pages:
                out.extend(p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", []))
        except (ClientError, BotoCoreError) as exc:
            raise map_error(exc, self.bucket, prefix) from exc
        return sorted(out)

    # --- read ---------------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Model names that have at least one object (published version or pointer)."""
        return [n for n in self._subdirs(self.prefix) if NAME_RE.match(n)]

    def versions(self, name: str) -> list[ModelVersion]:
        """Published versions of `name` (those with a manifest), oldest first."""
        check_name(name)
        out = []
        for ver in self._subdirs(self._key(name) + "/"):
            if not NAME_RE.match(ver):
                continue
            raw = self._get(self._key(name, ver, MANIFEST))
            if raw is not None:  # files without a manifest: an unfinished publish
                out.append(ModelVersion.from_json(raw, self._key(name, ver, MANIFEST)))
        return sorted(out, key=lambda v: (v.created_at, v.version))

    def get(self, name: str, version: str) -> ModelVersion:
        check_name(name)
        check_name(version, "version")
        key = self._key(name, version, MANIFEST)
        raw = self._get(key)
        if raw is None:
            raise SocratextError(errors.OBJECT_NOT_FOUND,
                                 f"model {name}@{version} is not in the registry (no s3://{self.bucket}/{key})")
        return ModelVersion.from_json(raw, key)

    def pointer(self, name: str) -> dict[str, Any] | None:
        """The raw `current.json` of `name` ({version, previous, updated_at}) or None."""
        check_name(name)
        raw = self._get(self._key(name, CURRENT))
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or not isinstance(doc.get("version"), str):
                raise ValueError("no version")
        except ValueError as exc:
            raise SocratextError(MANIFEST_INVALID, f"{self._key(name, CURRENT)} is invalid: {exc}") from None
        return doc

    def current(self, name: str) -> str | None:
        doc = self.pointer(name)
        return doc["version"] if doc else None

    def resolve(self, name: str, version: str | None = None) -> str:
        """`version` itself, or the current version of `name` when None (raises when there is none)."""
        if version is not None:
            return version
        cur = self.current(name)
        if cur is None:
            raise SocratextError(errors.OBJECT_NOT_FOUND, f"model {name!r} has no current version")
        return cur

    # --- write --------------------------------------------------------------------------------------------
    def publish(self, name: str, version: str, local_dir: Path, metrics: dict[str, float] | None = None, *,
                make_current: bool = True) -> ModelVersion:
        """Upload every file under `local_dir`, then the manifest (last); never overwrites a version."""
        check_name(name)
        check_name(version, "version")
        local_dir = Path(local_dir)
        files = local_files(local_dir) if local_dir.is_dir() else {}
        if not files:
            raise SocratextError(errors.FILE_NOT_FOUND, f"{local_dir} is not a directory with files")
        manifest_key = self._key(name, version, MANIFEST)
        if self._get(manifest_key) is not None:
            raise SocratextError(VERSION_EXISTS, f"model {name}@{version} already exists; versions are "
                                                 "immutable, publish a new version")
        self.store._check_bucket(self.bucket)
        hashes = {}
        for rel, path in files.items():
            key = self._key(name, version, rel)
            check_key(key)
            hashes[rel] = sha256_file(path)
            self._client_call(key, self.store.client.upload_file, Filename=str(path), Bucket=self.bucket,
                              Key=key)
        mv = ModelVersion(name, version, now_iso(), {k: float(v) for k, v in (metrics or {}).items()}, hashes)
        if not self._put_new(manifest_key, mv.to_json()):
            raise SocratextError(VERSION_EXISTS, f"model {name}@{version} was published concurrently")
        if make_current:
            self.promote(name, version)
        return mv

    def _write_pointer(self, name: str, version: str, previous: str | None) -> None:
        doc = {"version": version, "previous": previous, "updated_at": now_iso()}
        self.store.put_bytes(self.bucket, self._key(name, CURRENT),
                             (json.dumps(doc, indent=2) + "\n").encode(), "application/json")

    def promote(self, name: str, version: str) -> None:
        """Make `version` current; the version current until now becomes `previous` (no-op if already)."""
        self.get(name, version)  # must exist
        cur = self.current(name)
        if cur == version:
            return
        self._write_pointer(name, version, cur)

    def rollback(self, name: str) -> str:
        """Go back to the `previous` version; the one rolled back from becomes `previous` (so a second
        rollback undoes the first). Returns the version now current."""
        doc = self.pointer(name)
        prev = doc.get("previous") if doc else None
        if not prev:
            raise SocratextError(NO_PREVIOUS, f"model {name!r} has no previous version to roll back to")
        self.get(name, prev)
        self._write_pointer(name, prev, doc["version"])  # type: ignore[index]
        return prev

    # --- fetch --------------------------------------------------------------------------------------------
    def fetch(self, name: str, version: str, cache_dir: Path | None = None) -> Path:
        """A local directory with the version's files, each checked against the manifest's sha256.

        The directory is `<cache_dir>/<name>/<version>/` (cache root default `default_cache_dir()`). It is
        built in a temporary sibling and renamed into place, so a reader never sees half a model, and a
        complete copy (its `manifest.json` equal to the registry's) is reused without downloading.
        """
        mv = self.get(name, version)
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        final = root / name / version
        manifest = mv.to_json()
        if (final / MANIFEST).is_file() and (final / MANIFEST).read_bytes() == manifest and all(
                (final / rel).is_file() for rel in mv.files):
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=final.parent))
        try:
            for rel, digest in mv.files.items():
                dest = tmp / _safe_rel(rel)
                dest.parent.mkdir(parents=True, exist_ok=True)
                key = self._key(name, version, rel)
                self._client_call(key, self.store.client.download_file, Bucket=self.bucket, Key=key,
                                  Filename=str(dest))
                got = sha256_file(dest)
                if got != digest:
                    raise SocratextError(CHECKSUM_MISMATCH, f"s3://{self.bucket}/{key}: sha256 {got[:12]}… "
                                                            f"does not match the manifest's {digest[:12]}…")
            (tmp / MANIFEST).write_bytes(manifest)
            if final.exists():  # a stale or damaged copy: move it away first
                stale = Path(tempfile.mkdtemp(prefix=f".{version}.old-", dir=final.parent))
                try:
                    os.replace(final, stale / "d")
                except FileNotFoundError:
                    pass
                shutil.rmtree(stale, ignore_errors=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / MANIFEST).is_file():  # not a concurrent fetch that won the race
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final

    def fetch_ref(self, spec: str, cache_dir: Path | None = None) -> tuple[ModelVersion, Path]:
        """`registry:name[@version]` → (its version, local directory), resolving `current` when unpinned."""
        ref = parse_model_ref(spec)
        if ref is None:
            raise SocratextError(INVALID_NAME, f"{spec!r} is not a registry:<name>[@<version>] reference")
        name, version = ref
        version = self.resolve(name, version)
        return self.get(name, version), self.fetch(name, version, cache_dir)


def label_extractor(extractor: Any, name: str, version: str) -> Any:
    """Name the loaded extractor after its registry entry, so every event says which registry version
    produced it (a model directory's own labels.json may say anything). A model combined with the rules
    keeps the combination visible: `name+rules`, `version+<rules version>`."""
    inner = getattr(extractor, "model", None)
    if inner is not None and hasattr(inner, "label") and hasattr(extractor, "rules"):
        inner.name, inner.version = name, version
        extractor.name = f"{name}+{extractor.rules.name}"
        extractor.version = f"{version}+{getattr(extractor.rules, 'version', '0')}"
    else:
        extractor.name, extractor.version = name, version
    return extractor


def load_registry_extractor(spec: str, settings: Settings, registry: ModelRegistry | None = None,
                            cache_dir: Path | None = None) -> Any:
    """`registry:name[@version]` → a loaded `LayoutModelExtractor` named `name`, version `version`."""
    from socratext.model.extractor import LayoutModelExtractor

    registry = registry or ModelRegistry.from_settings(settings)
    mv, path = registry.fetch_ref(spec, cache_dir)
    extractor = LayoutModelExtractor.from_pretrained(path, device=settings.device)
    return label_extractor(extractor, mv.name, mv.version)
