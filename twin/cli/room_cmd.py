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
from twin.paths import Home

console = Console()


def register(app: typer.Typer) -> None:
    """Add this group's commands to the `twin` app."""
    app.command("app")(room)


def streamlit_command(
    host: str, port: int, tls: tuple[Path, Path] | None = None, secrets: Path | None = None
) -> list[str]:
    """The Streamlit server command: headless, no usage statistics, no file watcher.

    `tls` (certificate, key) serves HTTPS with Streamlit's own server.sslCertFile/sslKeyFile;
    `secrets` is the `[auth]` file for the identity provider's log-in (app/logic/oidc.py).
    """
    import app as room_pkg

    main = Path(room_pkg.__file__).resolve().parent / "main.py"
    https = ["--server.sslCertFile", str(tls[0]), "--server.sslKeyFile", str(tls[1])] if tls else []
    if secrets is not None:
        https += ["--secrets.files", str(secrets)]
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(main),
        "--server.headless",
        "true",
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
        "--global.developmentMode",
        "false",
        "--client.toolbarMode",
        "minimal",
        # ISA-101: a grey interface, so that colour means an abnormal state and nothing else.
        "--theme.base",
        "light",
        "--theme.primaryColor",
        "#5a5a5a",
        *https,
    ]


def room(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8501,
    plant: Annotated[
        str | None, typer.Option(help="Plant shown first (default: the first with data).")
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(help="HTTPS certificate (PEM); needs --tls-key.")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(help="HTTPS private key (PEM); needs --tls-cert.")
    ] = None,
    home: HomeOption = None,
) -> None:
    """The control room (Streamlit): trends, proposals, the twin, replay, audit, limits.

    On a plant network serve it over HTTPS (--tls-cert/--tls-key), or behind a reverse proxy
    that terminates TLS and authenticates users (docs/security.md). With `[oidc]` in the
    home's security.toml the log-in page also offers the site's identity provider.
    """
    if not 1 <= port <= 65535:
        raise BadInput(f"--port {port}: must be 1-65535")
    tls = _tls_files(tls_cert, tls_key)
    h = home_of(home)
    secrets = _oidc_secrets(h, host, port, https=tls is not None)
    env = {**os.environ, "TWIN_HOME": str(h.root), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    if plant:
        env["TWIN_PLANT"] = plant
    scheme = "https" if tls else "http"
    console.print(f"control room on {scheme}://{host}:{port}/ (home {h.root}); Ctrl-C stops")
    proc = subprocess.Popen(streamlit_command(host, port, tls, secrets), env=env)

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


def _tls_files(cert: Path | None, key: Path | None) -> tuple[Path, Path] | None:
    """Both files or neither; each must be readable, so Streamlit does not fail later."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise BadInput("--tls-cert and --tls-key go together: give both, or neither")
    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not path.is_file():
            raise BadInput(f"{option} {path}: no such file")
    return cert.resolve(), key.resolve()


def _oidc_secrets(h: Home, host: str, port: int, *, https: bool) -> Path | None:
    """Streamlit's `[auth]` secrets from `[oidc]` in security.toml, written 0600 under keys/;
    None when the home has no identity provider (the password log-in only)."""
    from app.logic import oidc
    from app.logic.session import cookie_key
    from twin.security_config import SecurityConfig
    from twin.state import Store

    with Store.open(h) as store:
        cfg = SecurityConfig.of(store).oidc
    if cfg is None:
        return None
    client_secret = os.environ.get(cfg.client_secret_env)
    if not client_secret:
        raise BadInput(
            f"[oidc] in security.toml: the client secret goes in ${cfg.client_secret_env}, "
            "which is not set"
        )
    text = oidc.streamlit_secrets(
        cfg,
        redirect=oidc.redirect_uri(cfg, host, port, https),
        client_secret=client_secret,
        cookie_secret=oidc.auth_cookie_secret(cookie_key(h.keys_dir)),
    )
    return oidc.write_secrets(h.keys_dir, text)
