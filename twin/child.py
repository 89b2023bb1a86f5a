"""`python -m twin.child PARENT_PID -- COMMAND...`: run COMMAND so that it ends when its parent
does, however the parent ends.

The child arms Linux's parent-death signal (PR_SET_PDEATHSIG: SIGTERM) for itself and then
execs the command in its own process, which keeps that setting. Arming it in the parent's fork
instead (subprocess's preexec_fn) runs Python code between fork and exec, which may deadlock
when another thread of the parent held a lock at the fork (a progress bar's refresh thread,
an import). If the parent is already gone when the signal is armed, the command never starts.
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def wrap(parent: int, args: list[str]) -> list[str]:
    """The command line that runs `args` as a child ending with process `parent` (Linux; the
    command itself elsewhere)."""
    if not sys.platform.startswith("linux"):
        return list(args)
    return [sys.executable, "-m", "twin.child", str(parent), "--", *args]


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit():
        print("usage: python -m twin.child PARENT_PID -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    parent, args = int(argv[0]), argv[2:]
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM)) != 0:
        print(f"twin.child: prctl failed (errno {ctypes.get_errno()})", file=sys.stderr)
        return 1
    if os.getppid() != parent:  # the parent died before the signal was armed
        print(f"twin.child: parent {parent} is gone; not starting {args[0]}", file=sys.stderr)
        return 1
    os.execvp(args[0], args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
