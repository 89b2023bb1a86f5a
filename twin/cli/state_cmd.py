"""`twin state copy`: move a twin home's state store (SQLite) into PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from twin.cli.common import HomeOption, home_of
from twin.errors import BadInput
from twin.paths import STATE_URL_ENV, Home

if TYPE_CHECKING:
    from twin.state import Store

console = Console()
state = typer.Typer(
    help="The state store: proposals, decisions, writes, users, audit.", no_args_is_help=True
)


@state.command("copy")
def copy_cmd(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            envvar=STATE_URL_ENV,
            show_default=False,
            help="The new, empty store: postgresql://... (default TWIN_STATE_URL), or a SQLite file.",
        ),
    ],
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            show_default=False,
            help="The store to copy: a SQLite file or postgresql://... (default: the home's state.db).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    home: HomeOption = None,
) -> None:
    """Copy every record (ids, audit chain, schema version) into an empty store, in one
    transaction; the copied audit log is verified with the source's key before COMMIT.

    Stop the runtimes and control rooms first: the source's writer lock is held meanwhile.
    """
    from twin.state.copy import copy_store
    from twin.state.db import is_url

    h = home_of(home)
    src = source or str(h.state_db)
    if not is_url(src) and not Path(src).is_file():
        raise BadInput(f"--from {src}: no such state store file")
    same_file = not is_url(src) and not is_url(to) and Path(src).resolve() == Path(to).resolve()
    if src == to or same_file:
        raise BadInput("--from and --to name the same store")
    with _open(src, h) as s, _open(to, h) as t:
        with console.status(f"copying {s.db.where} into {t.db.where} ..."):
            report = copy_store(s, t)
        source_files, target_files = s.audit_files, t.audit_files
    if as_json:
        out = {
            "source": report.source,
            "target": report.target,
            "rows": report.rows,
            "audit": {
                "ok": report.audit.ok,
                "entries": report.audit.entries,
                "text": str(report.audit),
            },
        }
        typer.echo(json.dumps(out, indent=2))
    else:
        table = Table("table", "rows")
        for name, n in report.rows.items():
            table.add_row(name, f"{n:,}")
        console.print(table)
        console.print(f"copied {report.source} into {report.target}", highlight=False)
        console.print(f"target: {report.audit}", soft_wrap=True, highlight=False)
    if source_files != target_files:
        console.print(
            f"note: the log is keyed with {source_files.keys_dir} and anchored in "
            f"{source_files.anchor}; the new store uses {target_files.keys_dir} and "
            f"{target_files.anchor}: copy them there (mode 0600) before it is written to or "
            "verified",
            soft_wrap=True,
            highlight=False,
        )


def _open(target: str, home: Home) -> Store:
    """A URL's store keeps this home's audit keys and anchor; a SQLite file its own folder's."""
    from twin.state import Store
    from twin.state.db import is_url

    return Store(target, home=home) if is_url(target) else Store(Path(target))


def register(app: typer.Typer) -> None:
    """Add the state group to the `twin` app."""
    app.add_typer(state, name="state")
