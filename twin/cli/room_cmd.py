"""`twin app`: the control room, a Streamlit server over this home's historian and state store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from twin.cli.common import HomeOption, home_of
from twin.errors import BadInput

console = Console()


def register(app: typer.Typer) -> None:
    """Add this group's commands to the `twin` app."""
    app.command("app")(room)


def streamlit_command(host: str, port: int) -> list[str]:
    """The Streamlit server command: headless, no usage statistics, no file watcher."""
    import app as room_pkg

    main = Path(room_pkg.__file__).resolve().parent / "main.py"
    return [
        sys.executable, "-m", "streamlit", "run", str(main),
        "--server.headless", "true",
        "--server.address", host,
        "--server.port", str(port),
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--global.developmentMode", "false",
        "--client.toolbarMode", "minimal",
        # ISA-101: a grey interface, so that colour means an abnormal state and nothing else.
        "--theme.base", "light",
        "--theme.primaryColor", "#5a5a5a",
    ]  # fmt: skip


def room(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8501,
    plant: Annotated[
        str | None, typer.Option(help="Plant shown first (default: the first with data).")
    ] = None,
    home: HomeOption = None,
) -> None:
    """The control room (Streamlit): trends, proposals, the twin, replay, audit, limits."""
    if not 1 <= port <= 65535:
        raise BadInput(f"--port {port}: must be 1-65535")
    h = home_of(home)
    env = {**os.environ, "TWIN_HOME": str(h.root), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    if plant:
        env["TWIN_PLANT"] = plant
    console.print(f"control room on http://{host}:{port}/ (home {h.root}); Ctrl-C stops")
    proc = subprocess.Popen(streamlit_command(host, port), env=env)

    def stop(signum: int, _frame: object) -> None:
        # Pass the stop on to Streamlit and let it shut down its sessions itself.
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            try:
                code = proc.wait(timeout=15 if proc.returncode is None else None)
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if code not in (0, -signal.SIGTERM, -signal.SIGINT):
        raise typer.Exit(code=1)
