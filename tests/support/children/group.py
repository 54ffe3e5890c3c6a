"""Stand-in child: it and a forked grandchild (same process group) both wait for SIGUSR1.

Each one creates ``<dir>/<role>.got-usr1`` when SIGUSR1 arrives and ``<dir>/<role>.ready``
once its handler is in place. The child exits with the grandchild's exit code (0 when the
grandchild got the signal), or 99 if the child itself never saw it.
"""

import os
import pathlib
import signal
import sys
from types import FrameType

out = pathlib.Path(sys.argv[1])
got: list[str] = []


def install(role: str, exit_now: bool) -> None:
    def on_usr1(signum: int, frame: FrameType | None) -> None:
        (out / f"{role}.got-usr1").touch()
        got.append(role)
        if exit_now:
            os._exit(0)

    signal.signal(signal.SIGUSR1, on_usr1)
    (out / f"{role}.ready").touch()


pid = os.fork()
if pid == 0:
    install("grandchild", exit_now=True)
    while True:
        signal.pause()
install("child", exit_now=False)
_, status = os.waitpid(pid, 0)  # PEP 475: resumed after our own handler has run
sys.exit(os.waitstatus_to_exitcode(status) if got else 99)
