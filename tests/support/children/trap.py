"""Stand-in child: exit with a code naming the signal it received (USR1 10, HUP 11, USR2 12).

Creates the file named by its argument once its handlers are in place.
"""

import os
import pathlib
import signal
import sys
from types import FrameType

CODES = {signal.SIGUSR1: 10, signal.SIGHUP: 11, signal.SIGUSR2: 12}


def on_signal(signum: int, frame: FrameType | None) -> None:
    os._exit(CODES[signal.Signals(signum)])


for sig in CODES:
    signal.signal(sig, on_signal)
pathlib.Path(sys.argv[1]).touch()
while True:
    signal.pause()
