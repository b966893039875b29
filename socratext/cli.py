"""`socratext` command line: `extract` here; stack and streaming commands are mounted from their modules."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

app = typer.Typer(help="Socratext: structured fields from receipt images, as a library, a CLI and a stream.",
                  no_args_is_help=True, add_completion=False)
err = Console(stderr=True)


@app.callback()
def _redact_logs() -> None:
    """Mask card numbers and secrets in every log line of every command (socratext.privacy)."""
    from socratext.privacy import install_log_redaction
    from socratext.settings import SettingsError, get_settings

    try:
        settings = get_settings()
    except SettingsError as exc:  # a bad variable: say which, not a traceback
        err.print(f"error: {exc}", highlight=False)
        raise typer.Exit(2) from None
    install_log_redaction(settings)


@app.command("settings")
def settings_cmd(
    markdown: bool = typer.Option(False, "--markdown", help="The defaults as a Markdown table "
                                  "(docs/configuration.md is this output)."),
) -> None:
    """Every SOCRATEXT_* setting with the value in force here (secrets masked) and what it does."""
    from socratext.settings import describe, get_settings, markdown_table

    if markdown:
        sys.stdout.write(markdown_table())
        return
    out = Console()
    for row in describe(get_settings()):
        changed = "" if row["value"] == row["default"] else f"   (default {row['default'] or 'empty'})"
        out.print(f"[bold]{row['variable']}[/bold]={row['value']}{changed}", highlight=False)
        out.print(f"    {row['description']}", highlight=False, style="dim")


@app.command("ocr-models")
def ocr_models_cmd() -> None:
    """Build what the configured OCR engine derives from its wheel (PP-OCR's int8 detector) ahead of time,
    so that a worker does not pay for it on its first receipt; setup.sh and the images run this."""
    from socratext.errors import SocratextError
    from socratext.ocr import make_ocr
    from socratext.settings import get_settings

    try:
        ocr = make_ocr(get_settings())
    except SocratextError as exc:
        err.print(f"[red]error[/red] {exc.code}: {exc.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    path = getattr(ocr, "detector_path", None)
    sys.stdout.write(f"{ocr.config}\n" + (f"detector: {path}\n" if path else ""))


IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".pdf"})
"""What a directory argument contributes: receipts, not the JSON or notes lying beside them."""


def expand_inputs(args: list[str]) -> list[Path]:
    """Files, directories (recursively: their images and PDFs, sorted) and globs (`"scans/**/*.jpg"`, for
    shells that do not expand them, or lists too long for the command line), in argument order.

    A name that is neither, nor matches anything, is kept so that it gets its `not_found` error line.
    """
    import glob

    out: list[Path] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*")
                              if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()))
        elif not path.exists() and glob.has_magic(arg):
            out.extend(Path(p) for p in sorted(glob.glob(arg, recursive=True)) if Path(p).is_file())
        else:
            out.append(path)
    return out


def done_ids(out: Path) -> set[str]:
    """Receipt ids already in the JSON Lines file `out` (resume), after cutting off a last line that a
    killed run left half-written, so that appending keeps the file valid."""
    ids: set[str] = set()
    if not out.exists():
        return ids
    with out.open("rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)
            data = data[: data.rfind(b"\n") + 1]
    for line in data.splitlines():
        try:
            rid = json.loads(line).get("receipt_id")
        except (ValueError, AttributeError):
            continue
        if isinstance(rid, str):
            ids.add(rid)
    return ids


@app.command()
def extract(
    inputs: list[str] = typer.Argument(..., metavar="FILES...",
                                       help="Receipt images (JPEG, PNG, TIFF, ...) or PDFs, directories "
                                            "(recursive) or quoted globs."),
    model: str = typer.Option(None, "--model", "-m",
                              help="'rules', 'default' (the bundled layout model), a model directory or "
                                   "a hub id; default: SOCRATEXT_MODEL, else 'default'."),
    out: Path = typer.Option(None, "--out", "-o",
                             help="Append JSON Lines to this file instead of stdout; receipts whose id is "
                                  "already in it are skipped (resume)."),
    jobs: int = typer.Option(0, "--jobs", "-j", min=0,
                             help="OCR threads (Tesseract runs outside the GIL); 0: one per core."),
    pretty: bool = typer.Option(False, "--pretty", help="Indented JSON instead of JSON Lines."),
    batch_size: int = typer.Option(8, "--batch-size", min=1,
                                   help="Receipts per model micro-batch (at most)."),
    progress: bool = typer.Option(None, "--progress/--no-progress",
                                  help="Progress bar on stderr (default: on for several files on a TTY)."),
) -> None:
    """Print one JSON object per receipt (the output contract) as each is done, in input order; errors go
    to stderr, one line each.

    A bad file does not stop the others; the exit code is 1 when any file failed, 130 on Ctrl-C, which
    leaves every line written complete (resume with the same --out).
    """
    import os

    from rich.progress import TimeRemainingColumn

    from socratext.pipeline import Failure, iter_extract_files

    if pretty and out is not None:
        raise typer.BadParameter("--pretty writes indented JSON, which --out cannot resume from",
                                 param_hint="--pretty")
    files = expand_inputs(inputs)
    skip = done_ids(out) if out is not None else set()
    if jobs == 0:
        try:
            jobs = len(os.sched_getaffinity(0))
        except AttributeError:
            jobs = os.cpu_count() or 1
    show = progress if progress is not None else (len(files) > 1 and err.is_terminal)
    sink = out.open("a", encoding="utf-8") if out is not None else sys.stdout
    failed = written = 0
    try:
        with Progress(TextColumn("extracting"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                      TimeRemainingColumn(), console=err, disable=not show) as bar:
            task = bar.add_task("extract", total=len(files), rate="")

            def tick(n: int) -> None:
                speed = bar.tasks[0].speed
                bar.update(task, completed=n, rate=f"{speed:.2f} files/s" if speed else "")

            results = iter_extract_files(files, model, batch_size=batch_size, jobs=jobs, skip_ids=skip,
                                         progress=tick)
            # closing: an interrupt between two receipts cancels the files not started now, not at exit
            with contextlib.closing(results):
                for res in results:
                    if isinstance(res, Failure):
                        failed += 1
                        err.print(f"[red]error[/red] {res.source}: {res.code}: {res.message}",
                                  highlight=False, soft_wrap=True)
                        continue
                    # one write and a flush per receipt: a consumer (or a Ctrl-C) sees whole lines only
                    line = json.dumps(res.export(), ensure_ascii=False, indent=2 if pretty else None)
                    sink.write(line + "\n")
                    sink.flush()
                    written += 1
    except KeyboardInterrupt:
        err.print(f"interrupted: {written} receipts written" + (f" to {out}; the same command resumes"
                                                                if out is not None else ""), highlight=False)
        raise typer.Exit(130) from None
    finally:
        if out is not None:
            sink.close()
    if skip and show:
        err.print(f"{len(skip)} receipts already in {out}: skipped", highlight=False)
    raise typer.Exit(1 if failed else 0)


def _mount() -> None:
    """Attach the stack and streaming commands, which live beside the code they drive."""
    from socratext.cli_models import models_app
    from socratext.cli_stack import stack_app
    from socratext.cli_stream import register
    from streams.replay import replay_cmd

    app.add_typer(stack_app, name="stack")
    app.add_typer(models_app, name="models")
    app.command("replay")(replay_cmd)
    register(app)
    from training.review.cli import register as register_review  # the learning loop's review commands

    register_review(app)


_mount()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
