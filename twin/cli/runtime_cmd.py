"""`twin serve`, `twin users ...` and `twin audit ...`."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from twin.cli.common import HomeOption, PlantArg, home_of, spec_of
from twin.errors import BadInput, TwinError

console = Console()


def register(app: typer.Typer) -> None:
    """Add this group's commands to the `twin` app."""
    app.command("serve")(serve)
    users = typer.Typer(help="Users of the control room and their roles.", no_args_is_help=True)
    users.command("add")(users_add)
    users.command("list")(users_list)
    app.add_typer(users, name="users")
    audit = typer.Typer(
        help="The append-only audit log: hash-chained, keyed, anchored.", no_args_is_help=True
    )
    audit.command("verify")(audit_verify)
    audit.command("export")(audit_export)
    audit.command("rotate-key")(audit_rotate_key)
    app.add_typer(audit, name="audit")


def serve(
    plant: PlantArg,
    mode: Annotated[str, typer.Option(help="advisory | supervised | auto")] = "supervised",
    source: Annotated[str, typer.Option(help="opcua | modbus")] = "opcua",
    steps: Annotated[int | None, typer.Option(help="Stop after N control intervals.")] = None,
    shadow: Annotated[
        str | None,
        typer.Option(help="Model version that plans beside the active one and writes nothing."),
    ] = None,
    retrain_on_drift: Annotated[
        str,
        typer.Option(
            "--retrain-on-drift",
            help="off | full | quick: when the drift alarm fires, retrain on the live history "
            "since its onset (a low-priority process; quick: twin train --quick's configs) and "
            "shadow the new version; promotion stays gated and by hand.",
        ),
    ] = "off",
    home: HomeOption = None,
) -> None:
    """Run beside a plant: ingest, a proposal every control interval, guarded write-back of approvals."""
    from twin.serve import RuntimeConfig
    from twin.serve import serve as run_serve

    spec = spec_of(plant)
    config = RuntimeConfig(
        mode=mode,  # type: ignore[arg-type]
        source=source,  # type: ignore[arg-type]
        steps=steps,
        shadow=shadow,
        retrain_on_drift=retrain_on_drift,  # type: ignore[arg-type]
    )
    h = home_of(home)
    if shadow is not None:
        from twin import registry

        if shadow not in registry.versions(h, spec):
            raise BadInput(f"--shadow {shadow}: no such model version of {spec.name}")
    console.print(f"serving {spec.name} in {mode} mode over {source} (home {h.root}); Ctrl-C stops")
    summary = run_serve(spec, h, config)
    console.print(
        f"stopped after {summary.steps} control intervals: {summary.proposals} proposals, "
        f"{summary.no_proposals} without a proposal ({', '.join(summary.reasons) or '-'}), "
        f"{summary.writes} values written, {summary.refused} refused, {summary.alarms} alarms"
    )


def users_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Option(help="viewer | operator | engineer | admin")] = "viewer",
    password_env: Annotated[
        str | None,
        typer.Option(help="Read the password from this environment variable (else prompt)."),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Add a user. Whoever can run this command owns the state store, so it needs no log-in."""
    from twin.state import Store
    from twin.users import create_user

    if password_env:
        password = os.environ.get(password_env)
        if not password:
            raise BadInput(f"--password-env {password_env}: the variable is not set or empty")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    actor = f"cli:{getpass.getuser()}"
    with Store.open(home_of(home)) as store:
        user = create_user(store, name, role, password, actor=actor)
    console.print(f"added user {user.name} ({user.role})")


def users_list(home: HomeOption = None) -> None:
    """List users and their roles."""
    from twin.state import Store

    with Store.open(home_of(home)) as store:
        table = Table("name", "role", "created", "by", "disabled")
        for u in store.list_users():
            table.add_row(
                u.name,
                u.role,
                u.created_at.isoformat(timespec="seconds"),
                u.created_by,
                "yes" if u.disabled else "",
            )
        console.print(table)


def audit_verify(home: HomeOption = None) -> None:
    """Check the chain, keys, MACs, length and anchor; names the first bad entry (exit 1)."""
    from twin import audit
    from twin.state import Store

    with Store.open(home_of(home)) as store:
        result = audit.verify(store)
    if not result.ok:
        raise TwinError(str(result))
    console.print(str(result), soft_wrap=True, highlight=False)


def audit_export(
    out: Annotated[Path, typer.Option("-o", "--output", help="CSV file to write.")],
    user: Annotated[str | None, typer.Option(help="Only this user's entries.")] = None,
    kind: Annotated[
        str | None, typer.Option(help="Only entries whose kind starts with this.")
    ] = None,
    plant: Annotated[str | None, typer.Option(help="Only this plant's entries.")] = None,
    home: HomeOption = None,
) -> None:
    """Write the audit log (with its hashes) as CSV."""
    from twin import audit
    from twin.state import Store

    with Store.open(home_of(home)) as store:
        n = audit.export_csv(store, out, user=user, kind=kind, plant=plant)
    console.print(f"wrote {n} audit entries to {out}")


def audit_rotate_key(
    why: Annotated[str, typer.Option(help="Reason, recorded in the audit log.")] = "",
    home: HomeOption = None,
) -> None:
    """Start a new audit key; the hand-over is itself an entry, MAC-ed with the old key."""
    from twin import audit
    from twin.state import Store

    with Store.open(home_of(home)) as store, store.write() as c:
        new = audit.rotate_key(c, user=f"cli:{getpass.getuser()}", why=why)
    console.print(f"rotated the audit key: new entries are keyed with {new}", highlight=False)
