"""A served plant ends on SIGTERM even when its event loop never comes round to the signal."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

BUSY_SERVER = """
import asyncio, time
from twin.cli.connect_cmd import stop_on_signals

async def main():
    stop = asyncio.Event()
    stop_on_signals(stop, exit_after_s=1.0)
    print("ready", flush=True)
    time.sleep(60)  # one callback that never yields, as a flooded server's message loop

asyncio.run(main())
"""

POLITE_SERVER = """
import asyncio
from twin.cli.connect_cmd import stop_on_signals

async def main():
    stop = asyncio.Event()
    stop_on_signals(stop)
    print("ready", flush=True)
    await stop.wait()
    print("stopped", flush=True)

asyncio.run(main())
"""


def _run_and_terminate(code: str) -> tuple[subprocess.CompletedProcess[str], float]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - began
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), took


def test_a_busy_server_exits_after_its_grace_period() -> None:
    done, took = _run_and_terminate(BUSY_SERVER)
    assert done.returncode == 128 + signal.SIGTERM, done
    assert 0.9 <= took < 20, took
    assert "not stopped 1 s after signal 15: exiting" in done.stderr


def test_a_server_that_stops_in_time_ends_normally() -> None:
    done, _ = _run_and_terminate(POLITE_SERVER)
    assert done.returncode == 0 and "stopped" in done.stdout, done
