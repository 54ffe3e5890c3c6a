"""prepare-jvm with the real jar: the cache it builds is one the JVM accepts and uses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from h2o_k8s_discovery.jar import ensure_h2o_jar
from h2o_k8s_discovery.startup_cache import open_startup_cache, startup_options
from h2o_k8s_discovery.startup_prepare import prepare_startup_cache

pytestmark = pytest.mark.slow

#: H2O logs this when it copies a native library out of the jar (no copy: not logged).
EXTRACTED = "Loaded library from lib/linux_64/libxgboost4j_gpu.so"


def prepare(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "h2o_k8s_discovery", "prepare-jvm"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def h2o_version(jar: Path, options: list[str], tmpdir: Path) -> subprocess.CompletedProcess[str]:
    """``java [options] -jar h2o.jar -version``: H2O loads its extensions, prints, exits."""
    return subprocess.run(
        ["java", *options, f"-Djava.io.tmpdir={tmpdir}", "-jar", str(jar), "-version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_prepared_cache_is_accepted_and_skips_the_library_copy(tmp_path: Path) -> None:
    """The archive passes -Xshare:on (which fails on any mismatch) and H2O no longer copies its
    native libraries out of the jar; without the cache it does (the negative control)."""
    jar = ensure_h2o_jar(progress=False)
    cache_dir = tmp_path / "cache"
    done = prepare({"H2O_JAR": str(jar), "H2O_JVM_STARTUP_CACHE": str(cache_dir)})
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in cache_dir.iterdir()) == [
        "h2o-nocoops.jsa",
        "h2o.jsa",
        "manifest.json",
        "native",
    ]
    assert (cache_dir / "native" / "libxgboost4j_gpu.so").stat().st_size > 10**6

    options, _ = startup_options(open_startup_cache(cache_dir, jar), (), {})
    (tmp_path / "with").mkdir()
    cached = h2o_version(jar, ["-Xshare:on", *options], tmp_path / "with")
    assert cached.returncode == 0, cached.stdout + cached.stderr
    assert "H2O started" in cached.stdout + cached.stderr
    assert EXTRACTED not in cached.stdout + cached.stderr

    # A heap past 32 GB runs without compressed oops: it gets, and maps, the other archive.
    big_heap, _ = startup_options(open_startup_cache(cache_dir, jar), ("-Xmx40g",), {})
    (tmp_path / "big").mkdir()
    big = h2o_version(jar, ["-Xmx40g", "-Xshare:on", *big_heap], tmp_path / "big")
    assert big.returncode == 0, big.stdout + big.stderr
    assert any(opt.endswith("h2o-nocoops.jsa") for opt in big_heap)

    (tmp_path / "without").mkdir()
    plain = h2o_version(jar, [], tmp_path / "without")
    assert EXTRACTED in plain.stdout + plain.stderr


def test_prepare_refuses_what_is_not_a_jar(tmp_path: Path) -> None:
    """A jar that is not a zip archive: exit 1 with the reason, and no cache directory."""
    fake = tmp_path / "h2o.jar"
    fake.write_text("not a zip")
    done = prepare({"H2O_JAR": str(fake)})
    assert done.returncode == 1
    assert "is not a jar" in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h2o.jar"]


def test_prepare_with_the_cache_off_is_a_usage_error(tmp_path: Path) -> None:
    """H2O_JVM_STARTUP_CACHE=off leaves nothing to prepare: exit 2, said plainly."""
    done = prepare({"H2O_JAR": str(tmp_path / "h2o.jar"), "H2O_JVM_STARTUP_CACHE": "off"})
    assert done.returncode == 2
    assert "nothing to prepare" in done.stderr


def test_a_jdk_without_the_no_compressed_oops_base_still_gets_the_first_archive(
    tmp_path: Path,
) -> None:
    """A JDK that cannot run without compressed oops (no classes_nocoops.jsa, say): the cache
    keeps its one usable archive and says why the other is missing, instead of failing."""
    java = tmp_path / "java"
    java.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do\n'
        '  if [ "$arg" = "-XX:-UseCompressedOops" ]; then\n'
        '    echo "An error has occurred while processing the shared archive file." >&2; exit 1\n'
        "  fi\n"
        "done\n"
        f'exec {shutil.which("java")} "$@"\n'
    )
    java.chmod(0o755)
    steps: list[str] = []
    cache = prepare_startup_cache(
        ensure_h2o_jar(progress=False), tmp_path / "cache", java=str(java), progress=steps.append
    )
    assert cache.archive.is_file()
    assert not cache.nocoops_archive.exists()
    assert json.loads(cache.manifest.read_text())["archives"] == ["h2o.jsa"]
    assert any(step.startswith("no archive for no compressed oops") for step in steps), steps
    assert sorted(p.name for p in cache.directory.iterdir()) == [
        "h2o.jsa",
        "manifest.json",
        "native",
    ]
