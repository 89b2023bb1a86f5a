"""A real Ray cluster on this machine, and two homes holding the same plant history.

CI starts one with `ray start --head` (.ci/run) and exports RAY_ADDRESS; without it, the
fixture starts its own head node the same way and stops it, by its process group, after.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from twin.fleet.cluster import keep_on_loopback
from twin.generate import generate_into
from twin.paths import Home
from twin.spec import load_spec

PLANTS = ("cstr", "four_tank")
START = datetime(2026, 2, 1, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reachable(address: str, env: dict[str, str]) -> bool:
    probe = f"import ray; ray.init(address={address!r}, log_to_driver=False); ray.shutdown()"
    return (
        subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True).returncode == 0
    )


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    if os.environ.get("RAY_ADDRESS"):
        yield os.environ["RAY_ADDRESS"]
        return
    keep_on_loopback()  # this process's drivers, and the head started below
    env = dict(os.environ, RAY_AUTH_MODE=os.environ.get("RAY_AUTH_MODE", "token"))
    os.environ["RAY_AUTH_MODE"] = env["RAY_AUTH_MODE"]  # drivers in this process use the same mode
    address = f"127.0.0.1:{_free_port()}"
    ray_bin = Path(sys.executable).with_name("ray")
    # `ray start` in token mode needs a token and never makes one (a fresh machine has none).
    subprocess.run([str(ray_bin), "get-auth-token", "--generate"], env=env, capture_output=True)
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", "--port", address.split(":")[1]]
        + ["--node-ip-address", "127.0.0.1", "--disable-usage-stats", "--include-dashboard=false"]
        + ["--object-store-memory", "100000000"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not _reachable(address, env):
            assert head.poll() is None, "ray start --head exited"
            assert time.monotonic() < deadline, f"no Ray head at {address} after 90 s"
            time.sleep(1)
        yield address
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(10)
        except subprocess.TimeoutExpired:
            pass
        _kill_group(head.pid)  # raylet and GCS share the head's process group


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with one hour of cstr and four_tank history (no models)."""
    home = Home.at(tmp_path_factory.mktemp("fleet") / "source")
    for i, plant in enumerate(PLANTS):
        generate_into(home, load_spec(plant), 1.0, seed=i, start=START, progress=False)
    return home.root


def copy_home(source: Path, dest: Path) -> Path:
    """A second home with the same history (and nothing else)."""
    shutil.copytree(source / "historian", dest / "historian")
    return dest
