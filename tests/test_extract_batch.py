"""`socratext extract` as a batch tool: it streams, resumes, survives Ctrl-C, walks directories and runs
several OCR threads — each checked on real files through the real OCR (the rules extractor: no model)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from socratext.cli import app
from socratext.pipeline import Failure, OcrStage, iter_extract_files
from socratext.settings import REPO_ROOT
from training.synth.generator import generate_receipt

runner = CliRunner()
N = 10


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """N receipts spread over nested folders, in the order a recursive walk lists them, and JSON files
    beside them that a directory argument must not pick up."""
    root = tmp_path_factory.mktemp("batch")
    paths = []
    for i in range(N):
        sub = root / ("a" if i < 4 else "b/c")
        sub.mkdir(parents=True, exist_ok=True)
        p = sub / f"r{i}.jpg"
        generate_receipt(920000 + i, degrade=False).image.save(p, quality=90)
        paths.append(p)
    (root / "notes.json").write_text("{}")
    (root / "b" / "gold.json").write_text("{}")
    return root, sorted(paths)


def lines_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_first_receipt_comes_out_before_the_last_file_is_read(tree: tuple[Path, list[Path]]) -> None:
    """Streaming: results are yielded while files are still waiting, with a bounded read-ahead."""
    _, paths = tree
    taken: list[Path] = []

    def lazily() -> Iterator[Path]:
        for p in paths:
            taken.append(p)
            yield p

    results = iter_extract_files(lazily(), "rules", jobs=1, batch_size=1)
    first = next(results)
    assert not isinstance(first, Failure), first
    assert first.source == {"path": str(paths[0])}
    assert len(taken) < len(paths), f"all {len(taken)} files were taken before the first result"
    rest = list(results)
    assert len(rest) == len(paths) - 1 and len(taken) == len(paths)


def test_directories_are_walked_recursively_and_globs_expanded(tree: tuple[Path, list[Path]]) -> None:
    root, paths = tree
    res = runner.invoke(app, ["extract", "--model", "rules", "--no-progress", str(root)])
    assert res.exit_code == 0, res.output
    assert [r["source"]["path"] for r in lines_of(res.stdout)] == list(map(str, paths)), \
        "every image under the folder, in order, and no JSON file"
    pattern = str(root / "**" / "r[0-2].jpg")
    res = runner.invoke(app, ["extract", "--model", "rules", "--no-progress", pattern])
    assert res.exit_code == 0, res.output
    assert [r["source"]["path"] for r in lines_of(res.stdout)] == list(map(str, paths[:3]))


def test_resume_skips_receipts_already_in_the_out_file(tree: tuple[Path, list[Path]], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    root, paths = tree
    out = tmp_path / "out.jsonl"
    ocrd: list[int] = []
    real_call = OcrStage.__call__

    def counting(self: OcrStage, images: list) -> list:
        ocrd.append(len(images))
        return real_call(self, images)

    monkeypatch.setattr(OcrStage, "__call__", counting)
    res = runner.invoke(app, ["extract", "--model", "rules", "--out", str(out), *map(str, paths[:3])])
    assert res.exit_code == 0 and res.stdout == "", res.output
    assert sum(ocrd) == 3
    with out.open("a") as f:  # a run killed in the middle of a line
        f.write('{"receipt_id": "half-writ')
    ocrd.clear()
    res = runner.invoke(app, ["extract", "--model", "rules", "--out", str(out), str(root)])
    assert res.exit_code == 0, res.output
    assert sum(ocrd) == N - 3, "the three receipts already written were not OCR'd again"
    recs = lines_of(out.read_text())  # every line parses: the half line was cut off before appending
    assert [r["source"]["path"] for r in recs] == list(map(str, paths))
    assert len({r["receipt_id"] for r in recs}) == N


def test_sigint_leaves_a_valid_json_lines_file_that_resumes(tree: tuple[Path, list[Path]],
                                                             tmp_path: Path) -> None:
    root, paths = tree
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "socratext", "extract", "--model", "rules", "-j", "1", "--batch-size", "1",
           "--out", str(out), str(root)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while not (out.exists() and out.read_text().count("\n") >= 1):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no receipt written in 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    text = out.read_text()
    assert text.endswith("\n")
    done = lines_of(text)  # raises on a partial line
    assert 1 <= len(done) < N
    res = runner.invoke(app, ["extract", "--model", "rules", "--out", str(out), str(root)])
    assert res.exit_code == 0, res.output
    recs = lines_of(out.read_text())
    assert sorted(r["source"]["path"] for r in recs) == sorted(map(str, paths))


def test_jobs_give_the_same_receipts_in_input_order(tree: tuple[Path, list[Path]]) -> None:
    _, paths = tree
    outs = {}
    for j in ("1", "2"):
        res = runner.invoke(app, ["extract", "--model", "rules", "--no-progress", "-j", j, *map(str, paths)])
        assert res.exit_code == 0, res.output
        outs[j] = [(r["receipt_id"], r["source"]["path"], r["fields"]) for r in lines_of(res.stdout)]
    assert [o[1] for o in outs["2"]] == list(map(str, paths))
    assert outs["1"] == outs["2"]


def test_progress_bar_counts_files_with_rate_and_eta(tree: tuple[Path, list[Path]], tmp_path: Path) -> None:
    """`--progress` (on by default on a terminal) draws on stderr: files done of total, the rate and
    the time left; the receipts still go to stdout or --out untouched."""
    _, paths = tree
    out = tmp_path / "out.jsonl"
    res = runner.invoke(app, ["extract", "--model", "rules", "--progress", "-j", "1", "--out", str(out),
                              *map(str, paths[:3])])
    assert res.exit_code == 0, res.output
    assert "extracting" in res.stderr and "3/3" in res.stderr and "ETA" in res.stderr
    assert "files/s" in res.stderr  # the rate, once a file is done
    assert len(lines_of(out.read_text())) == 3 and "extracting" not in out.read_text()
    quiet = runner.invoke(app, ["extract", "--model", "rules", "--no-progress", "-j", "1", str(paths[0])])
    assert "extracting" not in quiet.stderr
