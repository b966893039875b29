"""`socratext extract` end to end on real files: contract-shaped JSON Lines, clear errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from socratext.cli import app
from socratext.settings import REPO_ROOT
from training.synth.generator import generate_receipt

CHECKER = REPO_ROOT.parent / "shared" / "tools" / "check-extracted"
runner = CliRunner()


@pytest.fixture(scope="module")
def receipt_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[dict]]:
    d = tmp_path_factory.mktemp("receipts")
    paths, golds = [], []
    for i in range(2):
        r = generate_receipt(910000 + i, degrade=False)
        p = d / f"r{i}.jpg"
        r.image.save(p, quality=92)
        paths.append(p)
        golds.append(r.fields)
    return paths, golds


def test_extract_prints_contract_json_lines(receipt_files: tuple[list[Path], list[dict]]) -> None:
    paths, golds = receipt_files
    res = runner.invoke(app, ["extract", "--model", "rules", *map(str, paths)])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    assert len(lines) == 2
    for rec, gold, path in zip(lines, golds, paths, strict=True):
        assert rec["source"] == {"path": str(path)}
        assert rec["model"]["name"] == "rules"
        assert rec["fields"]["total"]["value"] == gold["total"]
        assert rec["fields"]["date"]["value"] == gold["date"]
        assert rec["fields"]["total"]["boxes"], "every field keeps its provenance"
    if CHECKER.exists():
        chk = subprocess.run([sys.executable, str(CHECKER)], input=res.stdout, text=True,
                             capture_output=True)
        assert chk.returncode == 0, chk.stdout


def test_bad_files_get_one_line_errors_and_the_rest_goes_on(
        receipt_files: tuple[list[Path], list[dict]], tmp_path: Path) -> None:
    paths, _ = receipt_files
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(paths[0].read_bytes()[:2000])
    res = runner.invoke(app, ["extract", "--model", "rules", str(empty), str(paths[0]), str(text),
                              str(truncated), str(tmp_path / "missing.jpg")])
    assert res.exit_code == 1
    assert len([line for line in res.stdout.splitlines() if line.strip()]) == 1
    err = res.stderr
    for name, code in (("empty.jpg", "empty_file"), ("notes.png", "not_an_image"),
                       ("cut.jpg", "truncated_image"), ("missing.jpg", "not_found")):
        line = next(line for line in err.splitlines() if name in line)
        assert code in line


def test_pretty_output_is_indented(receipt_files: tuple[list[Path], list[dict]]) -> None:
    paths, _ = receipt_files
    res = runner.invoke(app, ["extract", "--model", "rules", "--pretty", str(paths[0])])
    assert res.exit_code == 0
    assert res.stdout.startswith("{\n  ")
    assert json.loads(res.stdout)["receipt_id"]
