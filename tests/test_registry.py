"""Model registry: publish / list / promote / rollback / fetch against the real MinIO of the stack fixture,
plus the pure parts (references, manifests, naming of the loaded extractor) without any store.

Every stack test uses its own model name (run nonce + test name), so the shared bucket's other models and
earlier runs never matter.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from socratext.document import OcrPage, Word
from socratext.errors import OBJECT_NOT_FOUND, SocratextError
from socratext.registry import (
    CHECKSUM_MISMATCH,
    INVALID_NAME,
    MANIFEST,
    MANIFEST_INVALID,
    NO_PREVIOUS,
    VERSION_EXISTS,
    ModelRegistry,
    ModelVersion,
    label_extractor,
    local_files,
    parse_model_ref,
)
from socratext.settings import Settings

NONCE = uuid.uuid4().hex[:8]
pytestmark = pytest.mark.filterwarnings("ignore:.*(read_text|open_text) is deprecated:DeprecationWarning")


def tiny_model_dir(out: Path, name: str = "tiny", version: str = "1", seed: int = 0) -> Path:
    """A complete, loadable layout-model directory of a few hundred kB (tiny LayoutLMv3, text only)."""
    import torch
    from transformers import LayoutLMv3ForTokenClassification

    from socratext.labels import BIO_LABELS
    from socratext.model.layoutlmv3 import tiny_layoutlmv3_config
    from socratext.model.model_dir import save_model_dir
    from socratext.model.tokenizer import train_wordpiece

    torch.manual_seed(seed)
    tok = train_wordpiece(["CARREFOUR MARKET TOTAL 12,50 EUR 21/11/2026 CB PAIN"] * 5, vocab_size=120,
                          min_frequency=1)
    cfg = tiny_layoutlmv3_config(len(tok), len(BIO_LABELS), pad_token_id=tok.pad_token_id, max_tokens=128,
                                 visual=False, has_relative_attention_bias=False,
                                 has_spatial_attention_bias=False, id2label=dict(enumerate(BIO_LABELS)),
                                 label2id={t: i for i, t in enumerate(BIO_LABELS)})
    return save_model_dir(LayoutLMv3ForTokenClassification(cfg), tok, out, {"name": name, "version": version})


def _files(tmp: Path, content: dict[str, bytes]) -> Path:
    for rel, data in content.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(data)
    return tmp


# --- pure -----------------------------------------------------------------------------------------------

def test_parse_model_ref() -> None:
    assert parse_model_ref("registry:receipts") == ("receipts", None)
    assert parse_model_ref("registry:receipts@2026-11-26.1") == ("receipts", "2026-11-26.1")
    assert parse_model_ref("rules") is None and parse_model_ref("/models/x") is None
    for bad in ("registry:", "registry:a/b", "registry:x@", "registry:x@../y", "registry:..",
                "registry:a@b@c"):
        with pytest.raises(SocratextError) as e:
            parse_model_ref(bad)
        assert e.value.code == INVALID_NAME


def test_manifest_round_trip_and_rejects_escaping_paths() -> None:
    mv = ModelVersion("m", "1", "2026-11-26T00:00:00.000Z", {"f1": 0.5}, {"config.json": "ab" * 32})
    assert ModelVersion.from_json(mv.to_json()) == mv
    doc = json.loads(mv.to_json())
    doc["files"] = {"../../etc/passwd": "00"}
    with pytest.raises(SocratextError) as e:
        ModelVersion.from_json(json.dumps(doc))
    assert e.value.code in ("forbidden_key", MANIFEST_INVALID)
    with pytest.raises(SocratextError) as e:
        ModelVersion.from_json(b"{not json")
    assert e.value.code == MANIFEST_INVALID


def test_local_files_skip_the_registry_manifest(tmp_path: Path) -> None:
    _files(tmp_path, {"config.json": b"{}", "sub/w.bin": b"w", MANIFEST: b"{}"})
    assert list(local_files(tmp_path)) == ["config.json", "sub/w.bin"]


def test_label_extractor_names_plain_and_combined() -> None:
    from socratext.extractors.rules import RulesExtractor
    from socratext.model.combine import CombinedExtractor

    class Model:
        name, version = "layoutlmv3", "0"

        def label(self, pages, images=None):  # pragma: no cover - not called
            return []

    plain = label_extractor(Model(), "receipts", "v3")
    assert (plain.name, plain.version) == ("receipts", "v3")
    rules = RulesExtractor()
    comb = label_extractor(CombinedExtractor(Model(), rules), "receipts", "v4")
    assert comb.name == f"receipts+{rules.name}" and comb.version.startswith("v4+")
    assert (comb.model.name, comb.model.version) == ("receipts", "v4")


# --- against the real object store ----------------------------------------------------------------------

@pytest.fixture
def registry(stack: Settings) -> ModelRegistry:
    return ModelRegistry.from_settings(stack)


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    return f"t-{NONCE}-{request.node.name.removeprefix('test_')[:40].replace('_', '-')}"


@pytest.mark.stack
@pytest.mark.slow
def test_publish_list_get_and_fetch(registry: ModelRegistry, name: str, tmp_path: Path) -> None:
    src = _files(tmp_path / "src", {"config.json": b'{"a": 1}', "nested/weights.bin": bytes(range(256)) * 40})
    mv = registry.publish(name, "1", src, {"f1": 0.81})
    assert mv.files.keys() == {"config.json", "nested/weights.bin"} and mv.metrics == {"f1": 0.81}
    assert name in registry.names()
    assert registry.get(name, "1") == mv and registry.current(name) == "1"
    assert [v.version for v in registry.versions(name)] == ["1"]
    assert registry.store.list_keys(registry.bucket, f"models/{name}/1/") == [
        f"models/{name}/1/{rel}" for rel in ("config.json", "manifest.json", "nested/weights.bin")]
    local = registry.fetch(name, "1", tmp_path / "cache")
    assert local == tmp_path / "cache" / name / "1"
    assert (local / "nested/weights.bin").read_bytes() == (src / "nested/weights.bin").read_bytes()
    assert json.loads((local / MANIFEST).read_text())["version"] == "1"
    assert not [p for p in local.parent.iterdir() if p.name.startswith(".")], "temp dirs left behind"
    # a complete copy is reused, a damaged one is replaced
    assert registry.fetch(name, "1", tmp_path / "cache") == local
    (local / "config.json").unlink()
    assert (registry.fetch(name, "1", tmp_path / "cache") / "config.json").read_bytes() == b'{"a": 1}'
    # a directory fetched from the registry can be published again under another version
    mv2 = registry.publish(name, "2", local, make_current=False)
    assert mv2.files == mv.files and registry.current(name) == "1"
    assert [v.version for v in registry.versions(name)] == ["1", "2"]


@pytest.mark.stack
@pytest.mark.slow
def test_overwrite_refused_and_missing_versions(registry: ModelRegistry, name: str, tmp_path: Path) -> None:
    src = _files(tmp_path / "src", {"config.json": b"{}"})
    registry.publish(name, "1", src)
    other = _files(tmp_path / "other", {"config.json": b'{"other": true}'})
    with pytest.raises(SocratextError) as e:
        registry.publish(name, "1", other)
    assert e.value.code == VERSION_EXISTS
    assert registry.fetch(name, "1", tmp_path / "c").joinpath("config.json").read_bytes() == b"{}"
    for call in (lambda: registry.get(name, "9"), lambda: registry.promote(name, "9"),
                 lambda: registry.fetch(name, "9", tmp_path / "c")):
        with pytest.raises(SocratextError) as e:
            call()
        assert e.value.code == OBJECT_NOT_FOUND
    assert registry.current(f"{name}-none") is None and registry.versions(f"{name}-none") == []
    with pytest.raises(SocratextError):
        registry.publish(name, "3", tmp_path / "does-not-exist")


@pytest.mark.stack
@pytest.mark.slow
def test_unfinished_publish_is_invisible(registry: ModelRegistry, name: str) -> None:
    registry.store.put_bytes(registry.bucket, f"models/{name}/half/config.json", b"{}")
    assert registry.versions(name) == []
    with pytest.raises(SocratextError):
        registry.get(name, "half")


@pytest.mark.stack
@pytest.mark.slow
def test_promote_and_rollback(registry: ModelRegistry, name: str, tmp_path: Path) -> None:
    src = _files(tmp_path, {"config.json": b"{}"})
    registry.publish(name, "1", src)
    with pytest.raises(SocratextError) as e:
        registry.rollback(name)
    assert e.value.code == NO_PREVIOUS
    registry.publish(name, "2", src)
    assert registry.current(name) == "2" and registry.pointer(name)["previous"] == "1"
    registry.publish(name, "3", src, make_current=False)
    assert registry.current(name) == "2"
    registry.promote(name, "3")
    assert registry.pointer(name)["previous"] == "2"
    registry.promote(name, "3")  # already current: previous is kept
    assert registry.pointer(name)["previous"] == "2"
    assert registry.rollback(name) == "2" and registry.current(name) == "2"
    assert registry.rollback(name) == "3", "a second rollback undoes the first"


@pytest.mark.stack
@pytest.mark.slow
def test_fetch_refuses_a_file_that_does_not_match_its_sha(registry: ModelRegistry, name: str,
                                                         tmp_path: Path) -> None:
    src = _files(tmp_path / "src", {"config.json": b"{}", "weights.bin": b"good weights"})
    registry.publish(name, "1", src)
    registry.store.put_bytes(registry.bucket, f"models/{name}/1/weights.bin", b"tampered")
    with pytest.raises(SocratextError) as e:
        registry.fetch(name, "1", tmp_path / "cache")
    assert e.value.code == CHECKSUM_MISMATCH
    assert not (tmp_path / "cache" / name / "1").exists()
    assert not list((tmp_path / "cache" / name).iterdir()), "the temporary download was not removed"


@pytest.mark.stack
@pytest.mark.slow
def test_load_extractor_from_registry(stack: Settings, registry: ModelRegistry, name: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from socratext.pipeline import load_extractor

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    model_dir = tiny_model_dir(tmp_path / "m", name="whatever", version="0")
    registry.publish(name, "a1", model_dir)
    registry.publish(name, "a2", model_dir, make_current=False)
    page = OcrPage([Word("TOTAL", (10, 10, 80, 30)), Word("12,50", (90, 10, 150, 30))], 200, 50)
    ext = load_extractor(f"registry:{name}", stack.model_copy(update={"device": "cpu"}))
    assert (ext.name, ext.version) == (name, "a1")
    assert len(ext.label([page])[0]) == 2
    pinned = load_extractor(f"registry:{name}@a2", stack.model_copy(update={"device": "cpu"}))
    assert (pinned.name, pinned.version) == (name, "a2")
    assert (tmp_path / "xdg" / "socratext" / "models" / name / "a2" / "config.json").is_file()


def test_parse_metrics() -> None:
    import typer

    from socratext.cli_models import format_metrics, parse_metrics

    assert parse_metrics(["f1=0.81", " date = 1"]) == {"f1": 0.81, "date": 1.0}
    assert format_metrics({"b": 0.123456, "a": 2}) == "a=2, b=0.1235"
    for bad in ("f1", "=1", "f1=x"):
        with pytest.raises(typer.BadParameter):
            parse_metrics([bad])


@pytest.mark.stack
@pytest.mark.slow
def test_models_cli(stack: Settings, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from socratext.cli import app
    from socratext.settings import get_settings

    src = _files(tmp_path / "src", {"config.json": b"{}"})
    (tmp_path / "metrics.json").write_text('{"micro_f1": 0.5, "note": "not a number"}')
    monkeypatch.setenv("SOCRATEXT_KAFKA_BOOTSTRAP", stack.kafka_bootstrap)
    monkeypatch.setenv("SOCRATEXT_S3_ENDPOINT", stack.s3_endpoint)
    get_settings.cache_clear()
    run = CliRunner().invoke
    try:
        assert run(app, ["models", "publish", name, "1", str(src), "--metric", "f1=0.7"]).exit_code == 0
        res = run(app, ["models", "publish", name, "2", str(src), "--metrics-file",
                        str(tmp_path / "metrics.json")])
        assert res.exit_code == 0, res.output
        res = run(app, ["models", "publish", name, "2", str(src)])
        assert res.exit_code == 1 and VERSION_EXISTS in res.stderr
        res = run(app, ["models", "list", name, "--json"])
        rows = [json.loads(line) for line in res.stdout.splitlines()]
        assert [(r["version"], r["current"], r["metrics"]) for r in rows] == [
            ("1", False, {"f1": 0.7}), ("2", True, {"micro_f1": 0.5})]
        res = run(app, ["models", "list", name], terminal_width=200)
        assert res.exit_code == 0 and "micro_f1=0.5" in res.stdout and "*" in res.stdout
        res = run(app, ["models", "rollback", name])
        assert res.exit_code == 0 and res.stdout.strip() == "1"
        assert run(app, ["models", "promote", name, "2"]).exit_code == 0
        assert ModelRegistry.from_settings(stack).current(name) == "2"
        res = run(app, ["models", "promote", name, "nope"])
        assert res.exit_code == 1 and OBJECT_NOT_FOUND in res.stderr
    finally:
        get_settings.cache_clear()
