"""prepare-jvm with the real jar: the cache it builds is one the JVM accepts and uses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from h2o_k8s_discovery.jvm.jar import ensure_h2o_jar
from h2o_k8s_discovery.jvm.startup_cache import open_startup_cache, startup_options
from h2o_k8s_discovery.jvm.startup_prepare import prepare_startup_cache

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
    """The prepared cache holds the jar's libraries and a manifest, and H2O no longer copies its
    native libraries out of the jar; without the cache it does (the negative control)."""
    jar = ensure_h2o_jar(progress=False)
    cache_dir = tmp_path / "cache"
    done = prepare({"H2O_JAR": str(jar), "H2O_JVM_STARTUP_CACHE": str(cache_dir)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in cache_dir.iterdir()) == ["classes.jsa", "manifest.json", "native"]
    manifest = json.loads((cache_dir / "manifest.json").read_text())
    assert manifest["format"] == 3
    assert manifest["jar"]["size"] == jar.stat().st_size
    assert "libxgboost4j_gpu.so" in manifest["native_libraries"]
    assert manifest["class_archive"]["routes_proven"] >= 250
    assert "class archive proven: H2O binds all" in done.stderr

    options, _ = startup_options(open_startup_cache(cache_dir, jar), jar, (), {})
    assert [opt.partition("=")[0] for opt in options] == [
        "-Djava.library.path",
        "-XX:SharedArchiveFile",
    ]
    (tmp_path / "with").mkdir()
    # -Xshare:on: the JVM fails rather than start without the archive.
    cached = h2o_version(jar, ["-Xshare:on", *options], tmp_path / "with")
    assert cached.returncode == 0, cached.stdout + cached.stderr
    assert "H2O started" in cached.stdout + cached.stderr
    assert EXTRACTED not in cached.stdout + cached.stderr
    assert not any((tmp_path / "with").iterdir())

    (tmp_path / "without").mkdir()
    plain = h2o_version(jar, [], tmp_path / "without")
    assert EXTRACTED in plain.stdout + plain.stderr


def test_a_copied_jar_and_cache_with_whole_second_times_are_accepted(tmp_path: Path) -> None:
    """Jar and cache copied elsewhere with their times cut to the second, as image layers keep
    them, still match: the identity is the jar's content, not its path or time."""
    jar = ensure_h2o_jar(progress=False)
    prepare_startup_cache(jar, tmp_path / "original")
    moved = tmp_path / "layer" / "h2o.jar"
    moved.parent.mkdir()
    shutil.copyfile(jar, moved)
    shutil.copytree(tmp_path / "original", tmp_path / "layer" / "h2o.jar.startup")
    for path in (moved, *(tmp_path / "layer").rglob("*")):
        whole = int(path.stat().st_mtime) - 1
        os.utime(path, (whole, whole))
    assert open_startup_cache(tmp_path / "layer" / "h2o.jar.startup", moved).native_dir.is_dir()


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
