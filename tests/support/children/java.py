"""A stand-in for ``java`` that plays the JVM's part, and its faults, in reliability tests.

Installed as ``java`` on PATH. ``STAND_IN_MODE`` is a ``+``-separated list of behaviours and
``STAND_IN_DIR`` is where it leaves evidence: ``argv.json`` (argv and environment), ``started``,
``ready`` (its signal handlers are in place), ``signals`` (one line per signal it saw) and, for
``fork-exit``, ``descendants`` (the pids it left behind, as seen in its own PID namespace).

Behaviours:

- ``exit:N``: exit with N at once.
- ``self-kill:SIG``: die by signal SIG.
- ``hang``: wait forever with default signal dispositions, never ``ready`` (a JVM starting up).
- ``trap``: record TERM, INT, HUP, USR1, USR2; exit with 128 + n on the first TERM or INT, as a
  JVM does after its shutdown hooks.
- ``twice``: like ``trap`` but exit only on the second TERM or INT.
- ``clean``: like ``trap`` but exit 0 on the first TERM or INT, as a JVM whose shutdown hooks
  end with ``System.exit(0)``.
- ``group``: like ``trap``, with a grandchild in the same process group that records the
  signals it sees in ``grandchild-signals`` (and touches ``grandchild-ready``).
- ``stubborn``: record and ignore TERM and INT; run until killed.
- ``flatfile``: read the flatfile now, as H2O does during its boot (on a pipe this waits until
  the peers are written), and keep a copy as ``flatfile`` in the evidence.
- ``cloud``: also serve ``GET /3/Cloud`` on ``-ip``/``-port`` (under ``-context_path``, as H2O
  does), reporting a formed, healthy cloud of every flatfile peer with this node as leader.
- ``fork-exit[:group|:session]``: leave a running grandchild in its process group, one in a
  session of its own, or (no argument) both, then exit 0.
- ``orphans``: leave an orphan that exits at once, then exit 0 when no zombie stayed in the
  PID namespace within 5 s, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType

EVIDENCE = Path(os.environ["STAND_IN_DIR"])
RECORDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
STOPPING = (signal.SIGTERM, signal.SIGINT)


def touch(name: str) -> None:
    (EVIDENCE / name).touch()


def note_signal(signum: int, record_name: str = "signals") -> None:
    with open(EVIDENCE / record_name, "a") as log:
        log.write(f"{signal.Signals(signum).name}\n")


def record(stop_after: int | None, *, status: int | None = None, name: str = "signals") -> None:
    """Record every signal in RECORDED into ``name``; after ``stop_after`` TERM/INT exit with
    ``status`` (default 128 + n)."""
    seen = [0]

    def handler(signum: int, _frame: FrameType | None) -> None:
        note_signal(signum, name)
        if signum in STOPPING:
            seen[0] += 1
            if stop_after is not None and seen[0] >= stop_after:
                sys.exit(128 + signum if status is None else status)

    for signum in RECORDED:
        signal.signal(signum, handler)


def idle() -> None:
    while True:
        signal.pause()


def option(name: str) -> str:
    return sys.argv[sys.argv.index(name) + 1]


def read_flatfile() -> str:
    """The flatfile's text, read once (a pipe can only be read once)."""
    copy = EVIDENCE / "flatfile"
    if not copy.exists():
        copy.write_text(Path(option("-flatfile")).read_text())
    return copy.read_text()


def serve_cloud() -> None:
    """Answer /3/Cloud like a node that formed a cloud of every flatfile peer, as leader."""
    ip, port = option("-ip"), int(option("-port"))
    # Under -context_path, as H2O serves its REST API (a leading "/" added, "/" alone: none).
    raw = option("-context_path") if "-context_path" in sys.argv else "/"
    context = ("" if raw.strip() == "/" else raw) if raw.startswith("/") else "/" + raw
    lines = read_flatfile().split()
    own = f"{ip}:{port}" if ":" not in ip else f"[{ip}]:{port}"
    members = [own, *sorted(line for line in lines if line != own)]
    body = json.dumps(
        {
            "cloud_size": len(members),
            "consensus": True,
            "locked": False,
            "cloud_healthy": True,
            "node_idx": 0,
            "leader_idx": 0,
            "bad_nodes": 0,
            "nodes": [{"ip_port": member, "healthy": True} for member in members],
        }
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path.startswith(f"{context}/3/Cloud") else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer((ip, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def start_grandchild() -> None:
    """A child in this process group that records its own signals and idles; returns once the
    child is ready, so that whatever this stand-in does next happens with the child in place."""
    ready_read, ready_write = os.pipe()
    if os.fork() == 0:
        os.close(ready_read)
        record(1, name="grandchild-signals")
        touch("grandchild-ready")
        os.write(ready_write, b"+")
        os.close(ready_write)
        idle()
    os.close(ready_write)
    os.read(ready_read, 1)
    os.close(ready_read)


def zombies() -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if stat[stat.rindex(")") + 2] == "Z":
                found.append(int(name))
    return found


def leave_orphan() -> int:
    child = os.fork()
    if child == 0:
        if os.fork() == 0:
            os._exit(0)  # the orphan: reparented to the reaper, which must collect it
        os._exit(0)
    os.waitpid(child, 0)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not zombies():
            return 0
        time.sleep(0.02)  # a stand-in JVM looking at /proc, not a test waiting
    return 1


def fork_and_exit(which: str) -> int:
    """Leave running descendants: in our process group, in a session of their own, or both."""
    pids = []
    sessions = {"group": (False,), "session": (True,)}.get(which, (False, True))
    for own_session in sessions:
        pid = os.fork()
        if pid == 0:
            if own_session:
                os.setsid()
            idle()
        pids.append(pid)
    (EVIDENCE / "descendants").write_text(" ".join(map(str, pids)))
    return 0


def main() -> int:
    # Python ignores SIGPIPE and turns SIGINT into an exception; a JVM does neither. Before
    # "started": a test that signals a starting JVM waits for that file.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    (EVIDENCE / "argv.json").write_text(json.dumps({"argv": sys.argv, "env": dict(os.environ)}))
    touch("started")
    modes = os.environ.get("STAND_IN_MODE", "exit:0").split("+")
    for mode in modes:
        name, _, arg = mode.partition(":")
        if name == "exit":
            return int(arg)
        if name == "self-kill":
            os.kill(os.getpid(), signal.Signals[arg])
        if name == "hang":
            idle()
        if name == "fork-exit":
            return fork_and_exit(arg)
        if name == "orphans":
            return leave_orphan()
        if name == "flatfile":
            read_flatfile()
        if name == "cloud":
            serve_cloud()
        if name in ("trap", "twice"):
            record(1 if name == "trap" else 2)
        if name == "clean":
            record(1, status=0)
        if name == "group":
            start_grandchild()
            record(1)
        if name == "stubborn":
            record(None)
    touch("ready")
    idle()
    return 99


if __name__ == "__main__":
    sys.exit(main())
