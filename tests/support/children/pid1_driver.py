"""Test driver: run ARGV as a container's PID 1 would, report leftovers, exit with its status.

Meant to run as PID 1 of a fresh PID namespace (``unshare --pid --fork --mount-proc``).
After the main child has ended it waits (up to ``--settle`` seconds) for every other process in
the namespace to disappear, then writes a JSON report to ``--report``: its own pid, the
status, and the processes still present (zombies among them).

``--naive`` runs the child with ``subprocess.Popen(...).wait()`` instead of the Supervisor:
a PID 1 that waits only for its own child, which must leave the orphan as a zombie.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import time

from h2o_k8s_discovery.jvm.supervisor import Supervisor


def others() -> list[dict[str, object]]:
    """Every process in this PID namespace except this one, with its state letter."""
    found: list[dict[str, object]] = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except FileNotFoundError:  # gone while we looked
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state = stat[stat.rindex(")") + 2]
        found.append({"pid": int(name), "comm": comm, "state": state})
    return found


async def supervised(argv: list[str], settle: float) -> tuple[int, list[dict[str, object]]]:
    """Run argv under the Supervisor; keep the loop (and so the reaper) running while settling."""
    sup = Supervisor()
    sup.start()
    try:
        sup.spawn(argv, os.environ)
        status = await sup.wait()
        deadline = time.monotonic() + settle
        while others():
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.01)
        return status, others()
    finally:
        sup.close()


def naive(argv: list[str], settle: float) -> tuple[int, list[dict[str, object]]]:
    """Run argv the way a careless PID 1 would: wait for that one child, reap nothing else."""
    code = subprocess.Popen(argv).wait()
    status = 128 - code if code < 0 else code
    deadline = time.monotonic() + settle
    while others() and time.monotonic() < deadline:
        time.sleep(0.01)  # polls a condition with a deadline
    return status, others()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--report", required=True)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--naive", action="store_true")
    parser.add_argument("argv", nargs="+")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s: %(message)s")
    if args.naive:
        status, left = naive(args.argv, args.settle)
    else:
        status, left = asyncio.run(supervised(args.argv, args.settle))
    report = {
        "pid": os.getpid(),
        "status": status,
        "left": left,
        "zombies": [p for p in left if p["state"] == "Z"],
    }
    with open(args.report, "w") as f:
        json.dump(report, f)
    return status


if __name__ == "__main__":
    sys.exit(main())
