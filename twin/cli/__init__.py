"""The `twin` command line (a contract: see docs/architecture.md).

Each command group lives in its own module with a `register(app)` function; this module only
assembles them and maps errors to exit codes: 0 success, 2 bad input, 1 failure.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Protocol, runtime_checkable

import click
import typer
from rich.console import Console
from rich.markup import escape
from typer.exceptions import TyperException

from twin.errors import BadInput, TwinError
from twin.paths import STATE_URL_ENV

# One module per command group; adding a group adds a line here and touches no other module.
COMMAND_MODULES = (
    "twin.cli.plants_cmd",
    "twin.cli.data_cmd",
    "twin.cli.connect_cmd",
    "twin.cli.model_cmd",
    "twin.cli.plan_cmd",
    "twin.cli.runtime_cmd",
    "twin.cli.room_cmd",
    "twin.cli.health_cmd",
    "twin.cli.health_report_cmd",
    "twin.cli.demo_cmd",
    "twin.cli.fleet_cmd",
    "twin.cli.historian_cmd",
    "twin.cli.retrain_cmd",
    "twin.cli.state_cmd",
)

app = typer.Typer(
    name="twin",
    help="Industrial process-control digital twin: historian, JEPA world model, constrained planner, guarded write-back.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

err_console = Console(stderr=True)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level."),
    state_url: str | None = typer.Option(
        None, "--state-url", help="PostgreSQL state store (postgresql://...); sets TWIN_STATE_URL."
    ),
) -> None:
    if state_url:  # where every store this command (and its children) opens: Home.state_target
        os.environ[STATE_URL_ENV] = state_url
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


@runtime_checkable
class _Shows(Protocol):
    """A command-line error that prints itself with the usage line (click's own errors)."""

    def show(self) -> None: ...


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="twin", standalone_mode=False)
    except (click.exceptions.Exit, typer.Exit) as exc:
        return exc.exit_code
    except (click.exceptions.Abort, typer.Abort):
        err_console.print("aborted")
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except TyperException as exc:  # typer >= 0.26 raises its own copy of click's usage errors
        if isinstance(exc, _Shows):
            exc.show()  # the usage line, "Try 'twin ... --help'", and the error
        else:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return exc.exit_code
    except BadInput as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    except TwinError as exc:
        err_console.print(f"[bold red]failed:[/] {escape(str(exc))}", highlight=False)
        return 1
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
