"""`twin app`: serves the control room headless and stops cleanly on Ctrl-C and SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from room_plant import healthy, wait_for

from tests.support.procs import free_port
from twin.cli.room_cmd import streamlit_command


def test_streamlit_command_is_headless_without_usage_stats() -> None:
    cmd = streamlit_command("127.0.0.1", 8765)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("app/main.py")
    opts = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert opts["--server.headless"] == "true"
    assert opts["--browser.gatherUsageStats"] == "false"
    assert opts["--server.port"] == "8765" and opts["--server.address"] == "127.0.0.1"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_twin_app_serves_and_stops_cleanly(tmp_path, sig: int) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "app.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "twin.cli",
                "app",
                "--port",
                str(port),
                "--home",
                str(tmp_path / "home"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_for(
            lambda: healthy(f"http://127.0.0.1:{port}"),
            60,
            "the control room",
            proc,
            log,
        )
        assert (tmp_path / "home").is_dir()
        t0 = time.monotonic()
        proc.send_signal(sig)
        code = proc.wait(20)
        assert code == 0, log.read_text()
        assert time.monotonic() - t0 < 20
        assert not healthy(f"http://127.0.0.1:{port}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_twin_app_refuses_a_bad_port(tmp_path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "twin.cli", "app", "--port", "70000", "--home", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "--port 70000" in r.stderr
