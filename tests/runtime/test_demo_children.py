"""`twin demo`'s children end when the demo ends, however it ends: a demo killed with SIGKILL
runs none of its clean-up, yet the plant it started must not keep running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from twin.child import wrap


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_children_die_with_a_killed_demo(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from twin.demo import Services
        s = Services()
        s.start("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"],
                Path({str(tmp_path)!r}), {{}})
        print(s.procs[0][1].pid, flush=True)
        time.sleep(120)
    """)
    demo = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert demo.stdout is not None
    child = int(demo.stdout.readline())
    assert alive(child)
    # the wrapper exec'd the command in its own process: the pid is the sleeper's
    assert b"time.sleep(120)" in Path(f"/proc/{child}/cmdline").read_bytes()
    demo.send_signal(signal.SIGKILL)
    demo.wait(10)
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child), "the demo's child outlived a SIGKILLed demo"


def test_a_child_whose_parent_is_already_gone_never_starts(tmp_path: Path) -> None:
    """The wrapper arms the death signal, then finds its parent is not the demo that asked
    (the demo died first): the command must not run, or nothing would ever stop it."""
    marker = tmp_path / "ran"
    command = [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    gone = subprocess.run(wrap(1, command), timeout=60)
    assert gone.returncode == 1 and not marker.exists()
    ran = subprocess.run(wrap(os.getpid(), command), timeout=60)
    assert ran.returncode == 0 and marker.exists()
