"""Stand-in child: kill itself with the signal named by the only argument (e.g. SIGTERM)."""

import os
import signal
import sys

sig = signal.Signals[sys.argv[1]]
if sig != signal.SIGKILL:
    signal.signal(sig, signal.SIG_DFL)  # the interpreter ignores SIGPIPE; undo that
os.kill(os.getpid(), sig)
signal.pause()  # only reached if the signal is ignored or handled: a bug the test will see
