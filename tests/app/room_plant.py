"""A live plant for the browser tests, started with the real commands: `twin generate`,
`twin train --quick`, `twin users add`, `twin sim`, `twin serve --mode supervised`, `twin app`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import socket
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.procs import free_port, log_tail, twin_cmd, wait_for
from tests.support.specs import sim_cmd, spec_copy
from twin.spec import PlantSpec, load_spec

SPEED = 5.0
"""Simulated seconds per wall second: a control interval (30 s) every 6 s."""


def spec_on_free_ports(folder: Path) -> PlantSpec:
    """The built-in cstr spec on free ports, proposals living 10 plant minutes (2 wall minutes)."""
    return load_spec(spec_copy("cstr", folder, safety={"proposal_ttl_s": 600}))


def run(args: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("ab") as out:
        proc = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=300)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{log_tail(log)}"


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def read_opcua(spec: PlantSpec, tag: str) -> float:
    """The tag's value on the simulated server, read by a plain asyncua client (not our connector).

    In its own thread: Playwright's sync API owns this thread's event loop.
    """
    from asyncua import Client

    async def go() -> float:
        async with Client(spec.source.opcua.endpoint, timeout=5) as client:
            return float(await client.get_node(spec.tag(tag).opcua).read_value())

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, go()).result(timeout=30)


@dataclass
class LivePlant:
    root: Path
    home: Path
    spec: PlantSpec
    url: str
    procs: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = self.root / f"{name}.log"
        out = log.open("ab")
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        self.procs.append((name, proc, log))

    def stop(self) -> dict[str, int | None]:
        """SIGTERM in reverse start order; what each exited with (they must stop by themselves)."""
        codes: dict[str, int | None] = {}
        for name, proc, _log in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                codes[name] = proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                codes[name] = None
        return codes


PASSWORDS = {"olga": "operator password", "vic": "viewer password", "erin": "engineer password"}
ROLES = {"olga": "operator", "vic": "viewer", "erin": "engineer"}


def start_live_plant(root: Path) -> LivePlant:
    home = root / "home"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TWIN_APP_REFRESH_S": "1"}
    env.pop("TWIN_HOME", None)
    setup = root / "setup.log"
    # Three hours: the training split's validation block then lies well before the live data.
    run(twin_cmd("generate", "cstr", "--hours", "3", "--home", str(home)), env, setup)
    run(twin_cmd("train", "cstr", "--quick", "--home", str(home)), env, setup)
    for name, role in ROLES.items():
        run(
            twin_cmd(
                "users", "add", name, "--role", role, "--password-env", "PW", "--home", str(home)
            ),
            {**env, "PW": PASSWORDS[name]},
            setup,
        )
    spec = spec_on_free_ports(root / "spec")
    op = int(spec.source.opcua.endpoint.rsplit(":", 1)[1].split("/")[0])
    port = free_port()
    plant = LivePlant(root, home, spec, f"http://127.0.0.1:{port}")
    plant.start(
        "sim",
        sim_cmd(spec, SPEED),
        env,
    )
    wait_for(lambda: accepts(op), 60, "the simulated plant", watch=plant.procs)
    plant.start(
        "serve", twin_cmd("serve", str(spec.path), "--mode", "supervised", "--home", str(home)), env
    )
    plant.start(
        "app", twin_cmd("app", "--home", str(home), "--port", str(port), "--plant", "cstr"), env
    )
    wait_for(lambda: healthy(plant.url), 90, "the control room", watch=plant.procs)
    return plant
