"""Run a command against a small tmpfs of its own: read-only, full, or out of inodes.

Meant to run as ``unshare --mount --propagation private python in_mount_ns.py ...`` so the
tmpfs is private to the new mount namespace and disappears with it: nothing on the host is
mounted, nothing needs unmounting. Steps: mount a tmpfs with ``--options`` on ``--dir``, write
the ``--old`` files, fill the file system (``--fill`` bytes, ``--fill-inodes`` files) until the
kernel says ENOSPC, remount it read-only if asked, run the command (output to ``--log``), then
write a JSON report to ``--report``: the command's status and every entry left in the
directory with its size and (small) content, so the test sees temp files and partial files.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def fill_bytes(directory: Path) -> None:
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 512)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)


def fill_inodes(directory: Path) -> None:
    try:
        for number in range(1_000_000):
            (directory / f"inode-{number}").touch()
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise


def listing(directory: Path) -> dict[str, Any]:
    entries: dict[str, Any] = {}
    for entry in sorted(directory.iterdir()):
        if entry.is_dir():
            entries[entry.name] = {"dir": True}
        else:
            size = entry.stat().st_size
            text = entry.read_text(errors="replace") if size < 4096 else None
            entries[entry.name] = {"size": size, "text": text}
    return entries


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--options", required=True, help="tmpfs mount options")
    parser.add_argument("--old", action="append", default=[], metavar="NAME=TEXT")
    parser.add_argument("--fill", action="store_true")
    parser.add_argument("--fill-inodes", action="store_true")
    parser.add_argument("--remount-ro", action="store_true")
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    directory: Path = args.dir
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", args.options, "tmpfs", str(directory)], check=True
    )
    for item in args.old:
        name, _, text = item.partition("=")
        (directory / name).write_text(text)
    if args.fill:
        fill_bytes(directory)
    if args.fill_inodes:
        fill_inodes(directory)
    if args.remount_ro:
        subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)
    with args.log.open("wb") as log:
        done = subprocess.run(args.command, stdout=log, stderr=subprocess.STDOUT, check=False)
    report = {"status": done.returncode, "entries": listing(directory)}
    args.report.write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
