"""A stand-in for ``java`` that plays the JVM's part in PID-1 tests of ``run``.

Installed as ``java`` on PATH by the tests. ``FAKE_JAVA_MODE`` picks the behaviour and
``FAKE_JAVA_DIR`` is where it leaves evidence: ``argv.json`` (how it was called, its env) and
one file per signal it saw.

Modes: ``exit:N`` exit with N; ``self-kill:SIG`` die by a signal; ``trap`` record TERM, INT,
HUP, USR1 and USR2 (exit 0 on TERM or INT); ``stubborn`` ignore TERM and run until killed;
``group`` like ``trap`` with a grandchild in the same process group that records its signals
too; ``orphans`` leave an orphan that exits at once, then report (exit status) whether a zombie
stayed in the PID namespace.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

EVIDENCE = Path(os.environ["FAKE_JAVA_DIR"])
RECORDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def record(who: str) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        (EVIDENCE / f"{who}-{signal.Signals(signum).name}").touch()
        if signum in (signal.SIGTERM, signal.SIGINT):
            sys.exit(0)

    for signum in RECORDED:
        signal.signal(signum, handler)


def idle() -> None:
    while True:
        signal.pause()


def zombies() -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except FileNotFoundError:
                continue
            if stat[stat.rindex(")") + 2] == "Z":
                found.append(int(name))
    return found


def leave_orphan() -> int:
    """Fork a child that forks a grandchild and exits; the grandchild outlives it briefly."""
    child = os.fork()
    if child == 0:
        if os.fork() == 0:
            os._exit(0)  # the orphan: reparented to PID 1, which must reap it
        os._exit(0)
    os.waitpid(child, 0)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not zombies():
            return 0
        time.sleep(0.02)
    return 1


def main() -> int:
    (EVIDENCE / "argv.json").write_text(json.dumps({"argv": sys.argv, "env": dict(os.environ)}))
    mode, _, arg = os.environ.get("FAKE_JAVA_MODE", "exit:0").partition(":")
    # Python itself ignores SIGPIPE; a JVM would not.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if mode == "exit":
        return int(arg)
    if mode == "self-kill":
        os.kill(os.getpid(), signal.Signals[arg])
        idle()
    if mode == "trap":
        record("java")
        (EVIDENCE / "ready").touch()
        idle()
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        (EVIDENCE / "ready").touch()
        idle()
    if mode == "group":
        if os.fork() == 0:
            record("grandchild")
            (EVIDENCE / "grandchild-ready").touch()
            idle()
        record("java")
        (EVIDENCE / "ready").touch()
        idle()
    if mode == "orphans":
        return leave_orphan()
    return 99


if __name__ == "__main__":
    sys.exit(main())
