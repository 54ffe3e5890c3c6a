"""The JVM start-up cache: which options it adds, when it is refused, and what it is built from."""

from __future__ import annotations

import json
import logging
import os
import platform
import zipfile
from pathlib import Path

import pytest

from h2o_k8s_discovery.errors import StartupCacheError
from h2o_k8s_discovery.jvm import jvm_command
from h2o_k8s_discovery.peers import Peer
from h2o_k8s_discovery.settings import LaunchSettings, default_startup_cache
from h2o_k8s_discovery.startup_cache import (
    JarIdentity,
    StartupCache,
    available_memory,
    cached_startup_options,
    compressed_oops,
    open_startup_cache,
    startup_options,
)
from h2o_k8s_discovery.startup_prepare import extract_native_libraries

X86_64_LINUX = platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64")


def make_jar(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def make_cache(
    directory: Path, jar: Path, *, archive: bool = True, native: bool = True, nocoops: bool = True
) -> Path:
    """A cache directory as prepare-jvm leaves it, recorded for ``jar``."""
    directory.mkdir()
    identity = JarIdentity.of(jar)
    manifest = {
        "jar": {"path": identity.path, "size": identity.size, "mtime_ns": identity.mtime_ns}
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    if archive:
        (directory / "h2o.jsa").write_bytes(b"archive")
    if nocoops:
        (directory / "h2o-nocoops.jsa").write_bytes(b"archive without compressed oops")
    if native:
        (directory / "native").mkdir()
    return directory


@pytest.fixture
def jar(tmp_path: Path) -> Path:
    return make_jar(tmp_path / "h2o.jar", {"water/H2O.class": b"\xca\xfe"})


def test_default_cache_sits_next_to_the_jar() -> None:
    """Each jar has its own cache, named after it, so replacing the jar never reuses another's."""
    assert default_startup_cache(Path("/opt/h2o/h2o.jar")) == Path("/opt/h2o/h2o.jar.startup")
    assert default_startup_cache(Path("/")) == Path("/.startup")


def test_a_cache_for_this_jar_adds_the_archive_and_the_libraries(jar: Path) -> None:
    """Both parts are used, the cached libraries searched first and the usual places after."""
    cache = open_startup_cache(make_cache(jar.parent / "c", jar), jar)
    options, notes = startup_options(cache, (), {"LD_LIBRARY_PATH": "/opt/cuda/lib64::"})
    assert options == [
        f"-XX:SharedArchiveFile={cache.archive}",
        f"-Djava.library.path={cache.native_dir}:/opt/cuda/lib64:"
        "/usr/java/packages/lib:/usr/lib64:/lib64:/lib:/usr/lib",
    ]
    assert notes == []


def test_java_opts_of_the_user_win(jar: Path) -> None:
    """A user's own class-data-sharing or library path choice is kept, and the skip is noted."""
    cache = open_startup_cache(make_cache(jar.parent / "c", jar), jar)
    options, notes = startup_options(cache, ("-Xshare:off", "-Djava.library.path=/mine"), {})
    assert options == []
    assert len(notes) == 2
    assert "class data sharing" in notes[0]
    assert "java.library.path" in notes[1]


GIB = 1 << 30


@pytest.mark.parametrize(
    ("java_opts", "memory", "expected"),
    [
        ((), None, True),
        ((), 64 * GIB, True),  # 25 % by default: 16 GB
        (("-XX:MaxRAMPercentage=50",), 48 * GIB, True),
        (("-XX:MaxRAMPercentage=50",), 64 * GIB, False),
        (("-XX:MaxRAMPercentage=50", "-XX:MaxRAM=16g"), 256 * GIB, True),
        (("-Xmx31g",), 256 * GIB, True),
        (("-Xmx32g",), None, False),
        (("-Xmx40960m",), None, False),
        (("-XX:MaxHeapSize=64G",), None, False),
        (("-Xmx64g", "-Xmx8g"), None, True),
        (("-XX:-UseCompressedOops",), None, False),
        (("-XX:-UseCompressedOops", "-XX:+UseCompressedOops"), None, True),
    ],
)
def test_the_archive_matches_the_jvms_compressed_oops(
    jar: Path, java_opts: tuple[str, ...], memory: int | None, expected: bool
) -> None:
    """A JVM with a heap of 32 GB or more runs without compressed oops and can only map the
    archive made that way: the heap is predicted from JAVA_OPTS and the memory, as the JVM does."""
    assert compressed_oops(java_opts, lambda: memory) is expected
    cache = open_startup_cache(make_cache(jar.parent / "c", jar, native=False), jar)
    options, notes = startup_options(cache, java_opts, {}, memory=lambda: memory)
    name = "h2o.jsa" if expected else "h2o-nocoops.jsa"
    assert options == [f"-XX:SharedArchiveFile={cache.directory / name}"]
    assert notes == []


def test_a_missing_no_compressed_oops_archive_is_noted(jar: Path) -> None:
    """A cache without the second archive (a JDK without its base archive) gives none to a big
    heap, and says so."""
    cache = open_startup_cache(make_cache(jar.parent / "c", jar, nocoops=False), jar)
    options, notes = startup_options(cache, ("-Xmx64g",), {})
    assert not any(opt.startswith("-XX:SharedArchiveFile=") for opt in options)
    assert notes == ["no cached archive for no compressed oops"]


def test_available_memory_is_at_most_the_machines() -> None:
    """The memory the JVM sizes its heap from is known here, and never above the machine's."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    memory = available_memory()
    assert memory is not None
    assert 0 < memory <= physical
    assert available_memory(("-XX:-UseContainerSupport",)) == physical


def test_missing_parts_are_left_out(jar: Path) -> None:
    """A cache without libraries (another CPU) still gives its archive, and vice versa."""
    cache = open_startup_cache(make_cache(jar.parent / "c", jar, native=False), jar)
    assert startup_options(cache, (), {})[0] == [f"-XX:SharedArchiveFile={cache.archive}"]
    other = open_startup_cache(make_cache(jar.parent / "d", jar, archive=False), jar)
    assert startup_options(other, (), {})[0][0].startswith("-Djava.library.path=")


def test_a_cache_made_for_another_jar_is_refused(jar: Path) -> None:
    """Replacing the jar (same path, new bytes) makes its old cache unusable, with the reason."""
    directory = make_cache(jar.parent / "c", jar)
    make_jar(jar, {"water/H2O.class": b"\xca\xfe\xba\xbe", "another": b"x"})
    with pytest.raises(StartupCacheError, match="made for another jar"):
        open_startup_cache(directory, jar)


@pytest.mark.parametrize("manifest", ["", "{", "[]", '{"jar": {"path": 1}}'])
def test_an_unreadable_manifest_is_refused(jar: Path, manifest: str) -> None:
    """A damaged manifest is an error naming the cache, never a traceback."""
    directory = make_cache(jar.parent / "c", jar)
    (directory / "manifest.json").write_text(manifest)
    with pytest.raises(StartupCacheError, match="unreadable"):
        open_startup_cache(directory, jar)


def test_no_cache_is_an_info_unless_the_user_named_one(
    jar: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An absent default cache is an info; an absent cache the user named is a warning."""
    caplog.set_level(logging.INFO, logger="h2o_k8s_discovery.startup_cache")
    absent = jar.parent / "absent"
    for explicit, level in ((False, logging.INFO), (True, logging.WARNING)):
        caplog.clear()
        options = cached_startup_options(absent, explicit=explicit, jar=jar, java_opts=(), env={})
        assert options == []
        (record,) = caplog.records
        assert record.levelno == level
        assert "no JVM start-up cache" in record.getMessage()
        assert "H2O starts without it" in record.getMessage()


def test_cache_options_come_before_java_opts() -> None:
    """JAVA_OPTS come later on the command line, so a user's option overrides ours."""
    launch = LaunchSettings(java_opts=("-Xmx1g",))
    argv = jvm_command(
        launch,
        flatfile=Path("/tmp/f"),
        port=54321,
        own_ip=Peer.parse("10.0.0.1", 54321).ip,
        startup_options=["-XX:SharedArchiveFile=/c/h2o.jsa"],
    )
    assert argv[:3] == ["java", "-XX:SharedArchiveFile=/c/h2o.jsa", "-Xmx1g"]


@pytest.mark.skipif(not X86_64_LINUX, reason="the jar carries x86-64 Linux libraries only")
def test_native_libraries_are_unpacked_flat_and_only_for_this_platform(tmp_path: Path) -> None:
    """Only lib/linux_64/<name> is unpacked, byte for byte; other platforms and nested or
    traversing names are not."""
    jar = make_jar(
        tmp_path / "h2o.jar",
        {
            "lib/linux_64/libxgboost4j_gpu.so": b"gpu",
            "lib/linux_64/libxgboost4j_minimal.so": b"minimal",
            "lib/osx_64/libxgboost4j_minimal.dylib": b"osx",
            "lib/linux_64/nested/libx.so": b"nested",
            "lib/linux_64/../../evil.so": b"evil",
        },
    )
    target = tmp_path / "native"
    assert extract_native_libraries(jar, target) == [
        "libxgboost4j_gpu.so",
        "libxgboost4j_minimal.so",
    ]
    assert sorted(os.listdir(target)) == ["libxgboost4j_gpu.so", "libxgboost4j_minimal.so"]
    assert (target / "libxgboost4j_gpu.so").read_bytes() == b"gpu"
    assert not (tmp_path / "evil.so").exists()


def test_cache_class_reports_its_parts(tmp_path: Path) -> None:
    """The layout is one directory: h2o.jsa, native/ and manifest.json."""
    cache = StartupCache(tmp_path)
    assert (cache.archive.name, cache.native_dir.name, cache.manifest.name) == (
        "h2o.jsa",
        "native",
        "manifest.json",
    )


def test_a_cache_path_the_kernel_refuses_is_only_logged(
    jar: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cache directory whose name is too long for the file system: no option, a warning."""
    caplog.set_level(logging.INFO, logger="h2o_k8s_discovery.startup_cache")
    directory = jar.parent / ("c" * 300)
    assert cached_startup_options(directory, explicit=True, jar=jar, java_opts=(), env={}) == []
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "unreadable" in record.getMessage()
