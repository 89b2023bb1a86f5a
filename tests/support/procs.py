"""What every end-to-end test and served benchmark needs for real processes on 127.0.0.1: a
free port, a `twin` command started with its output in a log, a wait with the process's log on
failure, and a stop that escalates to SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def twin_cmd(*args: str) -> list[str]:
    """The `twin` command line with this interpreter (the checkout's environment)."""
    return [sys.executable, "-m", "twin.cli", *args]


def start_logged(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start `args` in its own session, stdout and stderr appended to `log`, unbuffered."""
    out = log.open("ab")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
    """Signal the process and wait; SIGKILL it if it has not ended after `timeout` s."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


Watched = tuple[str, subprocess.Popen[bytes], Path | None]
"""A named process and its log, for a wait to fail early on."""


def wait_for(
    check: Callable[[], Any],
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
    watch: Sequence[Watched] = (),
) -> Any:
    """Poll `check` until it returns something truthy; fail with the log's tail if a watched
    process (`proc`, or any of `watch`) ends first or the time runs out."""
    watched = [*watch, *([("process", proc, log)] if proc is not None else [])]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, p, plog in watched:
            if p.poll() is not None:
                raise AssertionError(
                    f"{name} exited ({p.returncode}) waiting for {what}:\n{log_tail(plog)}"
                )
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{log_tail(log)}")


def log_tail(log: Path | None, lines: int = 30) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
