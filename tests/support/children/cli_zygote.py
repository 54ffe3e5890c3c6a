"""Run the real ``h2o-k8s-discovery`` command many times without paying Python's start-up.

Fuzzing the command line with hundreds of examples would spend most of its time importing
aiohttp and dnspython again for each one. This zygote imports the command once, then forks one
child per request; each child *becomes* the command: its own working directory, exactly the
environment given, stdin from /dev/null, stdout and stderr to files, then ``cli.main(argv)``.
An uncaught exception is printed with its traceback and gives status 1, as the interpreter
does, and ``SystemExit`` is honoured, so a child behaves as ``python -m h2o_k8s_discovery``
would; only the imports were done before the fork.

Protocol: one JSON request per line on stdin, ``{"argv", "env", "cwd", "out", "err",
"timeout"}``; one JSON reply per line on stdout, ``{"status", "timed_out"}``. EOF ends it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import traceback
from typing import Any

from h2o_k8s_discovery.commands import cli
from h2o_k8s_discovery.footprint import keep_openssl_out


def become_the_command(request: dict[str, Any]) -> int:
    """In the forked child: set up the process as requested and run the command."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    stdin = os.open(os.devnull, os.O_RDONLY)
    stdout = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    stderr = os.open(request["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
        os.close(fd)
    argv: list[str] = request["argv"]
    sys.argv = ["h2o-k8s-discovery", *argv]
    try:
        return cli.main(argv)
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return 1
    except BaseException:  # the interpreter's own behaviour for an uncaught exception
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def run_one(request: dict[str, Any]) -> dict[str, Any]:
    """Fork, let the child run the command, wait for it within the request's timeout."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            status = become_the_command(request)
        finally:
            os._exit(status & 0xFF)
    pidfd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([pidfd], [], [], float(request["timeout"]))
        timed_out = not ready
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _, wait_status = os.waitpid(pid, 0)
    finally:
        os.close(pidfd)
    return {"status": os.waitstatus_to_exitcode(wait_status), "timed_out": timed_out}


def preload() -> None:
    """Import what ``run`` imports once chosen (cli.py and the runner defer it), so no child
    pays for it; without OpenSSL, as ``run`` does."""
    keep_openssl_out()


def main() -> int:
    preload()
    for line in sys.stdin:
        reply = run_one(json.loads(line))
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
