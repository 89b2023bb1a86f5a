"""`twin health`: a liveness probe for containers (Docker HEALTHCHECK, compose)."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import typer

from twin.errors import TwinError


def register(app: typer.Typer) -> None:
    @app.command("health")
    def health(
        tcp: str | None = typer.Option(None, help="HOST:PORT that must accept a TCP connection."),
        http: str | None = typer.Option(None, help="URL that must answer 200."),
        timeout: float = typer.Option(3.0, help="Seconds to wait."),
    ) -> None:
        """Exit 0 when the given endpoint answers, 1 otherwise."""
        if tcp is None and http is None:
            raise typer.BadParameter("give --tcp HOST:PORT or --http URL")
        if tcp is not None:
            host, _, port = tcp.rpartition(":")
            try:
                with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
                    pass
            except (OSError, ValueError) as exc:
                raise TwinError(f"{tcp}: no TCP connection ({exc})") from exc
        if http is not None:
            try:
                with urllib.request.urlopen(http, timeout=timeout) as resp:  # noqa: S310 (local probe)
                    if resp.status != 200:
                        raise TwinError(f"{http}: HTTP {resp.status}")
            except (urllib.error.URLError, OSError) as exc:
                raise TwinError(f"{http}: no answer ({exc})") from exc
        typer.echo("healthy")
