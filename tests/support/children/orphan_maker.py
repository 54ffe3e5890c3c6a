"""Stand-in child: fork a grandchild, then exit at once with the code given (default 0).

The grandchild is orphaned. By default it exits as soon as it has been reparented (so it
needs a reaper). With ``--linger PIDFILE`` it writes its pid to PIDFILE and sleeps until
killed instead.
"""

import argparse
import os
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--linger", metavar="PIDFILE")
parser.add_argument("--code", type=int, default=0)
args = parser.parse_args()

parent = os.getpid()
if os.fork() == 0:
    if args.linger:
        tmp = f"{args.linger}.tmp"
        with open(tmp, "w") as f:
            f.write(str(os.getpid()))
        os.rename(tmp, args.linger)
        while True:
            time.sleep(3600)
    deadline = time.monotonic() + 10
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(0.005)  # a stand-in child waiting for its parent to die, not a test wait
    os._exit(0)
sys.exit(args.code)
