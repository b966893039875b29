"""`socratext models list | publish | promote | rollback`: the model registry from the command line.

Workers started with `SOCRATEXT_MODEL=registry:<name>` follow `promote` and `rollback` within
`SOCRATEXT_MODEL_POLL_S` seconds, without a restart (streams/agents/extract.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from socratext.errors import SocratextError
from socratext.settings import get_settings

models_app = typer.Typer(help="The model registry: list, publish, promote and roll back model versions.",
                         no_args_is_help=True, add_completion=False)
err = Console(stderr=True)


def _registry():  # noqa: ANN202 - typed by ModelRegistry, imported lazily (boto3)
    from socratext.registry import ModelRegistry

    return ModelRegistry.from_settings(get_settings())


def _fail(exc: SocratextError) -> typer.Exit:
    err.print(f"[red]error[/red] {exc.code}: {exc.message}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def parse_metrics(items: list[str]) -> dict[str, float]:
    """`["f1=0.81", "date_exact=0.97"]` → {"f1": 0.81, ...} (pure; a malformed item is a usage error)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            if not sep or not key.strip():
                raise ValueError(item)
            out[key.strip()] = float(value)
        except ValueError:
            raise typer.BadParameter(f"--metric wants NAME=NUMBER, not {item!r}") from None
    return out


def format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))


@models_app.command("list")
def list_cmd(
    name: str = typer.Argument(None, help="Only this model (default: every model in the registry)."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines instead of a table."),
) -> None:
    """Every version of every model: created, metrics, number of files; `*` marks the current one."""
    reg = _registry()
    try:
        names = [name] if name else reg.names()
        rows = [(n, reg.current(n), v) for n in names for v in reg.versions(n)]
    except SocratextError as exc:
        raise _fail(exc) from None
    if as_json:
        for n, cur, v in rows:
            typer.echo(json.dumps({"name": n, "version": v.version, "created_at": v.created_at,
                                   "metrics": v.metrics, "files": len(v.files), "current": v.version == cur}))
        return
    table = Table(title=f"model registry s3://{reg.bucket}/{reg.prefix}")
    for col in ("", "name", "version", "created", "metrics", "files"):
        table.add_column(col)
    for n, cur, v in rows:
        table.add_row("*" if v.version == cur else "", n, v.version, v.created_at.replace("T", " ")[:19],
                      format_metrics(v.metrics), str(len(v.files)))
    Console().print(table)
    if not rows:
        err.print("no model versions" + (f" for {name!r}" if name else ""))


@models_app.command("publish")
def publish_cmd(
    name: str = typer.Argument(..., help="Model name (e.g. receipts)."),
    version: str = typer.Argument(..., help="New version (never reused: versions are immutable)."),
    model_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="The saved model directory."),
    metric: list[str] = typer.Option([], "--metric", help="NAME=NUMBER, repeatable (e.g. micro_f1=0.83)."),
    metrics_file: Path = typer.Option(None, "--metrics-file", exists=True, dir_okay=False,
                                      help="JSON object of numeric metrics (its top-level numbers)."),
    current: bool = typer.Option(True, "--current/--no-current", help="Make it the current version."),
) -> None:
    """Upload a model directory as NAME@VERSION (files first, manifest last) and, by default, promote it."""
    metrics: dict[str, float] = {}
    if metrics_file is not None:
        doc = json.loads(metrics_file.read_text(encoding="utf-8"))
        metrics.update({str(k): float(v) for k, v in doc.items() if isinstance(v, int | float)})
    metrics.update(parse_metrics(metric))
    if not (model_dir / "config.json").is_file():
        err.print(f"[yellow]warning[/yellow] {model_dir} has no config.json: workers cannot load it")
    reg = _registry()
    try:
        mv = reg.publish(name, version, model_dir, metrics, make_current=current)
    except SocratextError as exc:
        raise _fail(exc) from None
    err.print(f"published {name}@{version}: {len(mv.files)} files → {reg.uri(name, version)}"
              + (" (current)" if current else ""), highlight=False)


@models_app.command("promote")
def promote_cmd(name: str = typer.Argument(...), version: str = typer.Argument(...)) -> None:
    """Make NAME@VERSION the current version (workers following registry:NAME switch to it)."""
    reg = _registry()
    try:
        before = reg.current(name)
        reg.promote(name, version)
    except SocratextError as exc:
        raise _fail(exc) from None
    err.print(f"{name}: current {before} → {version}", highlight=False)


@models_app.command("rollback")
def rollback_cmd(name: str = typer.Argument(...)) -> None:
    """Go back to the previous current version of NAME (a second rollback undoes the first)."""
    reg = _registry()
    try:
        before = reg.current(name)
        now = reg.rollback(name)
    except SocratextError as exc:
        raise _fail(exc) from None
    err.print(f"{name}: current {before} → {now} (rolled back)", highlight=False)
    typer.echo(now)
