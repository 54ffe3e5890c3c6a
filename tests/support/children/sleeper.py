"""Stand-in child: create the file named by its first argument, then sleep until killed.

With ``--ignore-term`` it ignores SIGTERM (like a JVM stuck in shutdown hooks).
"""

import pathlib
import signal
import sys
import time

if "--ignore-term" in sys.argv[2:]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
pathlib.Path(sys.argv[1]).touch()
while True:
    time.sleep(3600)
