"""`socratext stack up|down|status`: the local Kafka + MinIO stack from the command line.

Kept apart from the main CLI so that the stack commands (process management, no ML imports) load fast and
the lead's CLI only has to mount `stack_app`.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from socratext import stack
from socratext.errors import SocratextError
from socratext.settings import get_settings

stack_app = typer.Typer(
    help="Start, stop and inspect the local stack (Apache Kafka + MinIO).", no_args_is_help=True
)
console = Console()


@stack_app.command("up")
def up_cmd(timeout: float = typer.Option(120.0, help="Seconds to wait for each service to answer.")) -> None:
    """Start Kafka and MinIO (if not running), create topics, bucket and bucket notification."""
    settings = get_settings()
    try:
        with console.status("starting Kafka and MinIO..."):
            addrs = stack.up(settings, timeout=timeout)
    except (stack.StackError, SocratextError) as exc:
        console.print(f"[red]stack up failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    table = Table(title="socratext stack", show_header=False)
    table.add_column("name", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in addrs.items():
        table.add_row(key, value)
    console.print(table)


@stack_app.command("down")
def down_cmd(timeout: float = typer.Option(stack.STOP_TIMEOUT_S, help="Seconds before SIGKILL.")) -> None:
    """Stop the services started from this state dir (SIGTERM, then SIGKILL after the timeout)."""
    stopped = stack.down(get_settings(), timeout=timeout)
    for name, was_running in stopped.items():
        console.print(f"{name}: {'stopped' if was_running else 'not running'}")


@stack_app.command("status")
def status_cmd() -> None:
    """Show whether each service answers, its address, pid and log file. Exit code 1 if one is down."""
    info = stack.status(get_settings())
    table = Table(title="socratext stack")
    for col in ("service", "ready", "address", "pid", "managed"):
        table.add_column(col, no_wrap=True)
    table.add_column("log", overflow="fold")
    for name, row in info.items():
        ready = "[green]yes[/green]" if row["ready"] else "[red]no[/red]"
        table.add_row(
            name, ready, str(row["address"]), str(row["pid"] or "-"), str(row["managed"]), str(row["log"])
        )
    console.print(table)
    if not all(row["ready"] for row in info.values()):
        raise typer.Exit(1)


if __name__ == "__main__":  # `python -m socratext.cli_stack up` works before the main CLI mounts stack_app
    stack_app()
