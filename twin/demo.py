"""`twin demo`: a simulated plant, a trained twin, the runtime and the control room, in one command.

Each part runs as its own process, exactly as an operator would start it by hand (docs/architecture.md
"Processes"), so the demo exercises the real protocols and the real state store. The demo only
orchestrates: it calls the same CLI commands and stops them all cleanly on Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console

from twin import child
from twin.errors import TwinError
from twin.paths import Home

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    plant: str = "cstr"
    """Built-in plant the demo simulates."""
    history_hours: float = 6.0
    """Simulated history generated for training."""
    train_budget_s: float = 110.0
    """Training time budget (the demo must be up within 3 minutes)."""
    scenario: str = "stable"
    """Disturbance scenario the live simulator runs."""
    speed: float = 2.0
    """Simulated plant speed-up: x2 fills the twin's 90 s input window in 45 s, so a proposal is
    pending about a minute after the control room is up, and each one stays 30 s for review."""
    app_port: int = 8501
    """Control-room port."""
    host: str = "127.0.0.1"
    """Control-room address."""
    seed: int = 1
    """Seed for history generation and training."""
    user: str = "demo"
    """Demo log-in (engineer role)."""


PLANT_DEFAULTS: dict[str, dict[str, float | str]] = {
    # Training needs about 1.5 days of tep history (a 3 h horizon behind the validation block);
    # its input window is 3 analyser cycles (18 plant minutes), filled in under a minute at x20.
    "tep": {"history_hours": 40.0, "scenario": "base", "speed": 20.0, "train_budget_s": 60.0},
}
"""Per-plant demo settings that differ from DemoConfig's (cstr) defaults."""


def demo_config(plant: str = DemoConfig.plant, **given: float | str | None) -> DemoConfig:
    """The demo's settings for a plant: its own defaults, then every option given (not None)."""
    chosen = {k: v for k, v in given.items() if v is not None}
    return DemoConfig(plant=plant, **{**PLANT_DEFAULTS.get(plant, {}), **chosen})  # type: ignore[arg-type]


@dataclass
class Services:
    """Child processes started by the demo, stopped in reverse order."""

    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, args: list[str], log_dir: Path, env: dict[str, str]) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        out = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 (owned by the child's lifetime)
        # It ends with the demo, however the demo ends (a SIGKILL runs none of its clean-up).
        proc = subprocess.Popen(
            child.wrap(os.getpid(), args),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.procs.append((name, proc))

    def check(self) -> None:
        for name, proc in self.procs:
            code = proc.poll()
            if code is not None:
                raise TwinError(
                    f"demo: the {name} process stopped with exit code {code}; see its log"
                )

    def stop(self) -> None:
        # One at a time, each gone before the next is signalled: the runtime closes its OPC-UA
        # session while the simulated plant still answers (together, asyncua logs a traceback).
        deadline = time.monotonic() + 15
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def twin_cmd(*args: str, home: Home) -> list[str]:
    return [sys.executable, "-m", "twin.cli", *args, "--home", str(home.root)]


def run_step(console: Console, title: str, args: list[str], env: dict[str, str]) -> str:
    """Run one CLI step in the foreground, its progress bar shown to the user; returns stdout."""
    console.print(f"[bold]demo:[/] {title}")
    proc = subprocess.run(args, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise TwinError(f"demo: step '{title}' failed with exit code {proc.returncode}")
    return proc.stdout


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, services: Services) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        services.check()
        if check():
            return
        time.sleep(0.5)
    raise TwinError(f"demo: {what} did not come up within {timeout_s:.0f} s")


def _history_start(cfg: DemoConfig) -> str:
    # History ends now, so that the live simulator continues it without a months-long gap.
    start = datetime.now(UTC) - timedelta(hours=cfg.history_hours)
    return start.replace(microsecond=0).isoformat()


def _has_active_model(home: Home, plant: str) -> bool:
    from twin.registry import active_version

    return active_version(home, plant) is not None


def run_demo(home: Home, cfg: DemoConfig, console: Console) -> None:
    """Bring everything up, print the URL and log-in, and wait for Ctrl-C."""
    env = {**os.environ, "TWIN_HOME": str(home.root), "PYTHONUNBUFFERED": "1"}
    if not _has_active_model(home, cfg.plant):
        run_step(
            console,
            f"generating {cfg.history_hours:g} h of simulated {cfg.plant} history",
            twin_cmd(
                "generate",
                cfg.plant,
                "--hours",
                f"{cfg.history_hours:g}",
                "--seed",
                str(cfg.seed),
                "--start",
                _history_start(cfg),
                home=home,
            ),
            env,
        )
        out = run_step(
            console,
            f"training the twin (budget {cfg.train_budget_s:.0f} s)",
            twin_cmd(
                "train",
                cfg.plant,
                "--seed",
                str(cfg.seed),
                "--max-seconds",
                f"{cfg.train_budget_s:.0f}",
                home=home,
            ),
            env,
        )
        console.print(f"[bold]demo:[/] trained version {out.strip().splitlines()[-1]}")
    password = _ensure_demo_user(home, cfg)
    services = Services()
    # `docker stop` and service managers send SIGTERM: stop the children the same way as Ctrl-C.
    # SIGINT explicitly too: a shell that starts the demo in the background sets SIGINT to ignored.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    logs = home.runs_dir / "demo"
    try:
        console.print(
            f"[bold]demo:[/] starting the simulated plant ({cfg.plant}, scenario {cfg.scenario}, x{cfg.speed:g})"
        )
        services.start(
            "plant",
            twin_cmd(
                "sim",
                cfg.plant,
                "--speed",
                f"{cfg.speed:g}",
                "--scenario",
                cfg.scenario,
                "--seed",
                str(cfg.seed),
                home=home,
            ),
            logs,
            env,
        )
        wait_until(
            lambda: _port_open("127.0.0.1", _opcua_port(cfg.plant)),
            60,
            "the simulated plant",
            services,
        )
        console.print("[bold]demo:[/] starting the runtime (supervised, OPC-UA)")
        services.start(
            "runtime",
            twin_cmd("serve", cfg.plant, "--mode", "supervised", "--source", "opcua", home=home),
            logs,
            env,
        )
        console.print("[bold]demo:[/] starting the control room")
        services.start(
            "control-room",
            twin_cmd("app", "--host", cfg.host, "--port", str(cfg.app_port), home=home),
            logs,
            env,
        )
        url = f"http://{cfg.host}:{cfg.app_port}"
        wait_until(lambda: _http_ok(url + "/_stcore/health"), 90, "the control room", services)
        console.print(f"\n[bold green]Control room:[/] {url}")
        console.print(
            f"[bold green]Log in:[/] user [bold]{cfg.user}[/]  password [bold]{password}[/]  (engineer)"
        )
        console.print(f"Logs: {logs}    Ctrl-C stops everything.\n")
        while True:
            services.check()
            time.sleep(1.0)
    except KeyboardInterrupt:
        console.print("\n[bold]demo:[/] stopping")
    finally:
        services.stop()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _ensure_demo_user(home: Home, cfg: DemoConfig) -> str:
    """The demo log-in: an engineer whose password is kept in the home for the next start."""
    from twin.state import Store

    secret_file = home.runs_dir / "demo" / "password"
    secret_file.parent.mkdir(parents=True, exist_ok=True)
    if secret_file.is_file():
        return secret_file.read_text().strip()
    password = "demo-" + secrets.token_hex(3)
    from twin.users import bootstrap_user

    bootstrap_user(Store.open(home), cfg.user, "engineer", password, actor="twin demo")
    secret_file.write_text(password + "\n")
    secret_file.chmod(0o600)
    return password


def _opcua_port(plant: str) -> int:
    from urllib.parse import urlparse

    from twin.spec import load_spec

    spec = load_spec(plant)
    assert spec.source.opcua is not None, "the demo plant serves OPC-UA"
    return urlparse(spec.source.opcua.endpoint).port or 4840


def _port_open(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:  # noqa: S310 (local)
            return resp.status == 200
    except OSError:
        return False
