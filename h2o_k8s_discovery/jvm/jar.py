"""Fetch the real ``h2o.jar`` once and keep it in a per-user cache.

Tests, benchmarks and image builds need the same jar the pods run. PyPI's ``h2o`` source
distribution carries it at ``h2o-<version>/h2o/backend/bin/h2o.jar``, so pip (the ordinary client
for PyPI, with whatever index, proxy and certificates the user configured for it) downloads the
sdist and only that one member is extracted.

The non-obvious decision: the member is streamed into a temporary file *inside the cache
directory* and renamed over the final name only once complete and recognisably a zip archive, so
an interrupted or concurrent fetch never leaves a truncated jar where the next caller would take
it for a good one. ``H2O_JAR`` (a jar the user already has) is the caller's business, not this
module's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from h2o_k8s_discovery.errors import H2OK8sDiscoveryError

DEFAULT_VERSION = "3.46.0.12"
"""The H2O-3 release the project is tested against."""

CACHE_ENV = "H2O_K8S_DISCOVERY_CACHE"
"""Environment variable naming the cache directory outright."""

_PIP_OUTPUT_TAIL = 2000  # characters of pip's captured output quoted in an error


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$H2O_K8S_DISCOVERY_CACHE``, else a directory under ``$XDG_CACHE_HOME`` or ``~/.cache``.

    Both fallbacks end in ``h2o-k8s-discovery``; ``environ`` defaults to ``os.environ``.
    """
    env = os.environ if environ is None else environ
    if explicit := env.get(CACHE_ENV):
        return Path(explicit)
    if xdg := env.get("XDG_CACHE_HOME"):
        return Path(xdg) / "h2o-k8s-discovery"
    return Path.home() / ".cache" / "h2o-k8s-discovery"


def cached_jar_path(version: str = DEFAULT_VERSION, cache_dir: Path | None = None) -> Path:
    """Where the jar of ``version`` lives in the cache, whether or not it is there yet."""
    return (cache_dir if cache_dir is not None else default_cache_dir()) / f"h2o-{version}.jar"


def ensure_h2o_jar(
    version: str = DEFAULT_VERSION, cache_dir: Path | None = None, *, progress: bool = True
) -> Path:
    """Return the path of the cached ``h2o-<version>.jar``, downloading it first if missing.

    A download costs ~280 MB and some 20 s; ``progress`` lets pip draw its own progress bar
    (otherwise pip runs ``--quiet`` and its output is quoted only if it fails).
    """
    target = cached_jar_path(version, cache_dir)
    if target.is_file():
        if not zipfile.is_zipfile(target):
            raise H2OK8sDiscoveryError(
                f"cached jar {target} is not a zip archive; delete it and run again to re-fetch"
            )
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as tmp:
        sdist = _download_sdist(version, Path(tmp), progress=progress)
        extract_h2o_jar(sdist, version, target)
    return target


def _download_sdist(version: str, dest: Path, *, progress: bool) -> Path:
    """Run ``pip download`` for the ``h2o`` sdist into ``dest`` and return the archive's path."""
    argv = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        # Only h2o itself must come as an sdist (the jar is in it); the build backend pip puts in
        # the isolated build env may still come as a wheel.
        "--no-binary",
        "h2o",
        "--disable-pip-version-check",
        f"h2o=={version}",
        "-d",
        str(dest),
    ]
    if not progress:
        argv.append("--quiet")
    # Build isolation stays on: generating the sdist's metadata needs ``wheel`` in the build env.
    result = subprocess.run(
        argv,
        check=False,
        stdout=None if progress else subprocess.PIPE,
        stderr=None if progress else subprocess.STDOUT,
        text=True,
    )
    if result.returncode != 0:
        detail = (
            "see pip's output above"
            if progress
            else "pip said:\n" + (result.stdout or "")[-_PIP_OUTPUT_TAIL:]
        )
        raise H2OK8sDiscoveryError(
            f"`pip download h2o=={version}` failed with exit status {result.returncode} "
            f"(check the version exists on PyPI and the index is reachable); {detail}"
        )
    archives = sorted(dest.glob(f"h2o-{version}.tar.gz")) or sorted(dest.glob("h2o-*.tar.gz"))
    if not archives:
        found = ", ".join(sorted(p.name for p in dest.iterdir())) or "nothing"
        raise H2OK8sDiscoveryError(
            f"pip download h2o=={version} succeeded but left no h2o-*.tar.gz sdist (found: {found})"
        )
    return archives[0]


def extract_h2o_jar(sdist: Path, version: str, target: Path) -> None:
    """Stream ``h2o-<version>/h2o/backend/bin/h2o.jar`` out of ``sdist`` into ``target`` atomically.

    Raises ``H2OK8sDiscoveryError`` if the archive is unreadable, lacks the member, or the member
    is not a zip archive; ``target`` is then left untouched.
    """
    member_name = f"h2o-{version}/h2o/backend/bin/h2o.jar"
    fd, part_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    part = Path(part_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _copy_member(sdist, member_name, out)
            out.flush()
            os.fsync(out.fileno())
        if not zipfile.is_zipfile(part):
            raise H2OK8sDiscoveryError(
                f"{member_name} in {sdist} is not a zip archive; the download is corrupt, run again"
            )
        part.chmod(0o644)
        os.replace(part, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()


def _copy_member(sdist: Path, member_name: str, out: BinaryIO) -> None:
    try:
        # "r|*": one sequential pass over the compressed stream, never the whole index in memory.
        with tarfile.open(sdist, mode="r|*") as archive:
            for member in archive:
                if member.name != member_name:
                    continue
                source = archive.extractfile(member) if member.isfile() else None
                if source is None:
                    raise H2OK8sDiscoveryError(f"{member_name} in {sdist} is not a regular file")
                shutil.copyfileobj(source, out, length=1 << 20)
                return
    except (tarfile.TarError, OSError, EOFError) as err:
        raise H2OK8sDiscoveryError(f"cannot read the h2o sdist {sdist}: {err}") from err
    raise H2OK8sDiscoveryError(
        f"{sdist} has no member {member_name}; is it really the h2o sdist of that version?"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Print the path of the cached jar (fetching it if needed); used by setup scripts."""
    parser = argparse.ArgumentParser(
        prog="python -m h2o_k8s_discovery.jvm.jar",
        description="Fetch the real h2o.jar into a cache (once) and print its path.",
    )
    parser.add_argument("--version", default=DEFAULT_VERSION, help="H2O-3 release (%(default)s)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="cache directory")
    parser.add_argument("--quiet", action="store_true", help="no pip progress bar")
    args = parser.parse_args(argv)
    try:
        path = ensure_h2o_jar(args.version, args.cache_dir, progress=not args.quiet)
    except H2OK8sDiscoveryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
