"""`socratext` command line: `extract` here; stack and streaming commands are mounted from their modules."""

from __future__ import annotations

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
    from socratext.settings import get_settings

    install_log_redaction(get_settings())


@app.command()
def extract(
    files: list[Path] = typer.Argument(..., help="Receipt images (JPEG, PNG, TIFF, ...) or PDFs."),
    model: str = typer.Option(None, "--model", "-m",
                              help="'rules', 'default' (the bundled layout model), a model directory or "
                                   "a hub id; default: SOCRATEXT_MODEL, else 'default'."),
    pretty: bool = typer.Option(False, "--pretty", help="Indented JSON instead of JSON Lines."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Receipts per model micro-batch."),
    progress: bool = typer.Option(None, "--progress/--no-progress",
                                  help="Progress bar on stderr (default: on for several files on a TTY)."),
) -> None:
    """Print one JSON object per receipt (the output contract) on stdout; errors go to stderr, one line each.

    A bad file does not stop the others; the exit code is 1 when any file failed.
    """
    from socratext.pipeline import extract_files, load_extractor

    extractor = load_extractor(model)
    show = progress if progress is not None else (len(files) > 1 and err.is_terminal)
    with Progress(TextColumn("extracting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, disable=not show) as bar:
        task = bar.add_task("extract", total=len(files))
        receipts, failures = extract_files(files, extractor, batch_size=batch_size,
                                           progress=lambda n: bar.update(task, completed=n))
    for rec in receipts:
        sys.stdout.write(json.dumps(rec.export(), ensure_ascii=False, indent=2 if pretty else None) + "\n")
    for f in failures:
        err.print(f"[red]error[/red] {f.source}: {f.code}: {f.message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1 if failures else 0)


def _mount() -> None:
    """Attach the stack and streaming commands, which live beside the code they drive."""
    from socratext.cli_models import models_app
    from socratext.cli_stack import stack_app
    from socratext.cli_stream import register
    from socratext.replay import replay_cmd

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
