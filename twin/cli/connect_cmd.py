"""`twin sim`, `twin ingest` and `twin certs`: serving, streaming and securing plant connections."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console

from twin.cli.common import HomeOption, PlantArg, home_of, parse_optional_time, spec_of
from twin.errors import BadInput
from twin.paths import Home

console = Console()


class Security(StrEnum):
    none = "none"
    sign = "sign"
    sign_encrypt = "sign-encrypt"


class SourceChoice(StrEnum):
    opcua = "opcua"
    modbus = "modbus"


STOP_GRACE_S = 10.0
"""How long the simulated plant may take to stop after SIGINT/SIGTERM before it exits anyway."""


def stop_on_signals(stop: asyncio.Event, exit_after_s: float | None = None) -> None:
    """SIGINT/SIGTERM set `stop`; with `exit_after_s`, a process that has not ended that long
    after the signal exits anyway (status 128 + the signal's number).

    A Python-level handler, not the event loop's: it runs between bytecodes even while a
    callback keeps the loop from coming round (asyncua's server answering a client whose
    requests keep arriving held `twin sim` past SIGTERM for over 30 s), and the deadline runs
    in a thread. `twin ingest` passes no deadline: it flushes its historian before it ends."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int, frame: object) -> None:
        loop.call_soon_threadsafe(stop.set)
        if exit_after_s is not None:
            deadline = threading.Timer(exit_after_s, _exit_now, args=(signum, exit_after_s))
            deadline.daemon = True
            deadline.start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)


def _exit_now(signum: int, after_s: float) -> None:
    print(
        f"not stopped {after_s:g} s after signal {signum}: exiting",
        file=sys.stderr,
        flush=True,
    )
    os._exit(128 + signum)


def sim_cmd(
    plant: PlantArg,
    opcua_port: Annotated[
        int | None, typer.Option("--opcua-port", help="OPC-UA port (default: the spec's; 0: none).")
    ] = None,
    modbus_port: Annotated[
        int | None,
        typer.Option("--modbus-port", help="Modbus TCP port (default: the spec's; 0: none)."),
    ] = None,
    speed: Annotated[
        float, typer.Option("--speed", min=0.001, help="Simulated seconds per wall second.")
    ] = 1.0,
    scenario: Annotated[
        str | None, typer.Option("--scenario", help="Disturbance/setpoint scenario of the plant.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Noise seed.")] = 0,
    start: Annotated[
        str | None,
        typer.Option("--start", help="Simulated start time, ISO 8601 (default: now, UTC)."),
    ] = None,
    security: Annotated[
        Security,
        typer.Option(
            "--security", help="OPC-UA security: none, sign or sign-encrypt (Basic256Sha256)."
        ),
    ] = Security.none,
    users: Annotated[
        Path | None,
        typer.Option(
            "--users",
            help="File of name:password (or name:$argon2 hash) lines; default: the spec's username/password env vars.",
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    home: HomeOption = None,
) -> None:
    """Run a plant's simulator and serve it over OPC-UA and Modbus TCP until Ctrl-C / SIGTERM."""
    from connectors.certs import make_certificates
    from connectors.modbus_server import ModbusServeConfig
    from connectors.opcua_server import OpcuaServeConfig
    from connectors.simserver import SimServeConfig, SimServer
    from connectors.users import UserTable
    from plants.base import Simulation

    spec = spec_of(plant)
    the_home = home_of(home)
    table = UserTable.from_file(users) if users is not None else UserTable.from_env(spec)
    opcua = None
    if (spec.source.opcua is not None and opcua_port != 0) or opcua_port:
        url = urlsplit(spec.source.opcua.endpoint) if spec.source.opcua else None
        port = opcua_port or (url.port if url and url.port else 4840)
        opcua = OpcuaServeConfig(
            host=host,
            port=port,
            path=(url.path if url and url.path else "/twin/"),
            security=security.value,
            users=table,
        )
        if security != Security.none:
            if not table:
                raise BadInput(
                    "--security needs users: --users FILE, or set the spec's username/password "
                    "environment variables"
                )
            _, server_pair = make_certificates(the_home.certs_dir)
            opcua.certificate, opcua.private_key = server_pair.certificate, server_pair.private_key
            _trust_simulator(the_home, server_pair.certificate)
    modbus = None
    if (spec.source.modbus is not None and modbus_port != 0) or modbus_port:
        src = spec.source.modbus
        modbus = ModbusServeConfig(
            host=host,
            port=modbus_port or (src.port if src else 502),
            device_id=src.device_id if src else 1,
            word_order=src.word_order if src else "big",
        )
    if opcua is None and modbus is None:
        raise BadInput(
            "nothing to serve: give --opcua-port or --modbus-port (the spec has no [source] sections)"
        )
    sim = Simulation(
        spec, seed=seed, scenario=scenario, start=parse_optional_time(start, "--start")
    )
    config = SimServeConfig(speed=speed, opcua=opcua, modbus=modbus)

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop, exit_after_s=STOP_GRACE_S)
        async with SimServer(spec, sim, config) as server:
            where = []
            if opcua is not None:
                where.append(
                    f"{opcua.endpoint} (security {opcua.security}"
                    f"{', ' + str(len(table)) + ' user(s)' if table else ', anonymous'})"
                )
            if modbus is not None:
                where.append(f"modbus://{modbus.host}:{modbus.port} device {modbus.device_id}")
            console.print(
                f"serving {spec.name} at {speed:g}x: " + "; ".join(where), highlight=False
            )
            sys.stdout.flush()
            await server.run(stop)
        console.print(f"stopped {spec.name} after {server.step} steps", highlight=False)

    asyncio.run(main())


def ingest_cmd(
    plant: PlantArg,
    source: Annotated[
        SourceChoice, typer.Option("--source", help="Which of the spec's sources to read.")
    ] = SourceChoice.opcua,
    duration: Annotated[
        float | None,
        typer.Option("--duration", help="Stop after this many seconds (default: until Ctrl-C)."),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Override the port of the spec's source.")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Stream a live plant into the historian, printing a status line; survives server restarts."""
    from connectors.factory import SourceKind, make_source
    from twin.historian import Historian
    from twin.ingest import IngestStats, ingest

    spec = spec_of(plant)
    the_home = home_of(home)
    src: SourceKind = "opcua" if source == SourceChoice.opcua else "modbus"

    async def main() -> IngestStats:
        live = make_source(spec, src, the_home, port)  # inside the loop: pymodbus binds to it
        stop = asyncio.Event()
        stop_on_signals(stop)
        with Historian(the_home.historian_dir(spec.name)) as historian:
            async with live:
                console.print(
                    f"ingesting {spec.name} over {src} into {historian.root}", highlight=False
                )
                with console.status("starting ...") as status:
                    shown = [0]

                    def show(stats: IngestStats, connected: bool) -> None:
                        status.update(stats.line(connected))
                        shown[0] += 1
                        # Without a terminal (a log file), a line every 10 s instead of a live line.
                        if not console.is_terminal and (shown[0] % 10 == 1 or duration is not None):
                            console.print(stats.line(connected), highlight=False)

                    return await ingest(
                        live,
                        historian,
                        duration_s=duration,
                        stop=stop,
                        on_status=show,
                        source_name=src,
                    )

    stats = asyncio.run(main())
    console.print(
        f"stored {stats.samples:,} samples ({stats.bad:,} not good), {stats.gaps} gap(s) recorded, "
        f"{stats.backfilled:,} back-filled",
        highlight=False,
    )


def certs_cmd(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option("--out", help="Folder (default: HOME/certs).")] = None,
    days: Annotated[int, typer.Option("--days", min=1, help="Validity in days.")] = 365,
    force: Annotated[bool, typer.Option("--force", help="Replace existing certificates.")] = False,
    home: HomeOption = None,
) -> None:
    """Make self-signed OPC-UA application certificates (client and simulator server) and the audit key.

    The simulator's own server certificate is trusted in this home, so `twin sim --security`
    and `twin ingest` work together; any other server's certificate needs `twin certs trust`.
    """
    if ctx.invoked_subcommand is not None:
        return
    from connectors.certs import make_certificates
    from twin.audit import ensure_key
    from twin.audit_keys import AuditFiles

    the_home = home_of(home)
    folder = out or the_home.certs_dir
    client, server = make_certificates(folder, days=days, overwrite=force)
    for label, pair in (("client", client), ("server", server)):
        console.print(f"{label}: {pair.certificate} + {pair.private_key}", highlight=False)
    _trust_simulator(the_home, server.certificate)
    files = AuditFiles.of_home(the_home)
    key_id = ensure_key(files)
    console.print(f"audit key: {key_id} in {files.keys_dir}", highlight=False)


def _trust_simulator(home: Home, certificate: Path) -> None:
    from connectors.trust import Certificate, TrustList

    cert = Certificate.load(certificate)
    path = TrustList(home.trust_dir).add(cert)
    console.print(f"trusted (simulator): {path}", highlight=False)


def certs_trust_cmd(
    file: Annotated[Path, typer.Argument(help="Server certificate, PEM or DER.")],
    home: HomeOption = None,
) -> None:
    """Trust an OPC-UA server's certificate; compare its fingerprint with the plant's first."""
    from connectors.trust import Certificate, TrustList

    cert = Certificate.load(file)
    path = TrustList(home_of(home).trust_dir).add(cert)
    console.print(f"trusted {cert.subject}\nSHA-256 {cert.fingerprint}\nas {path}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this group's commands to the `twin` app."""
    app.command("sim")(sim_cmd)
    app.command("ingest")(ingest_cmd)
    certs = typer.Typer(help="OPC-UA certificates, their trust list, and the audit key.")
    certs.callback(invoke_without_command=True)(certs_cmd)
    certs.command("trust")(certs_trust_cmd)
    app.add_typer(certs, name="certs")
