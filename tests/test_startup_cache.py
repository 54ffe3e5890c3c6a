"""The JVM start-up cache: which options it adds, when it is refused, and what it is built from."""

from __future__ import annotations

import json
import logging
import os
import platform
import zipfile
from pathlib import Path

import pytest

from h2o_k8s_discovery.config.settings import LaunchSettings, default_startup_cache
from h2o_k8s_discovery.errors import NotAJarError, StartupCacheError
from h2o_k8s_discovery.jvm.archive_proof import compare_routes, parse_routes
from h2o_k8s_discovery.jvm.class_archive import ArchivedJar
from h2o_k8s_discovery.jvm.command import jvm_command
from h2o_k8s_discovery.jvm.jar_identity import JarIdentity
from h2o_k8s_discovery.jvm.startup_cache import (
    ArchiveRecord,
    StartupCache,
    cached_startup_options,
    manifest_for,
    open_startup_cache,
    startup_options,
)
from h2o_k8s_discovery.jvm.startup_prepare import extract_native_libraries
from h2o_k8s_discovery.peers import Peer

X86_64_LINUX = platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64")


def make_jar(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def make_cache(directory: Path, jar: Path, *, native: bool = True, archive: bool = True) -> Path:
    """A cache directory as prepare-jvm leaves it, recorded for ``jar``."""
    directory.mkdir()
    record = ArchiveRecord(None, missing_because="H2O exited")
    if archive:
        (directory / "classes.jsa").write_bytes(b"archive")
        record = ArchiveRecord(ArchivedJar.of(jar), routes_proven=295)
    (directory / "manifest.json").write_text(manifest_for(JarIdentity.of(jar), "java", [], record))
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


def test_a_cache_for_this_jar_adds_the_libraries_and_the_archive(jar: Path) -> None:
    """The cached libraries are searched first and the usual places after, and the class
    archive is mapped; nothing else."""
    cache = open_startup_cache(make_cache(jar.parent / "c", jar), jar)
    options, notes = startup_options(cache, jar, (), {"LD_LIBRARY_PATH": "/opt/cuda/lib64::"})
    assert options == [
        f"-Djava.library.path={cache.native_dir}:/opt/cuda/lib64:"
        "/usr/java/packages/lib:/usr/lib64:/lib64:/lib:/usr/lib",
        f"-XX:SharedArchiveFile={cache.directory / 'classes.jsa'}",
    ]
    assert notes == []


def test_java_opts_of_the_user_win(jar: Path) -> None:
    """A user's own library path is kept, and the skip is noted; the archive is still used."""
    cache = open_startup_cache(make_cache(jar.parent / "c", jar), jar)
    options, notes = startup_options(cache, jar, ("-Djava.library.path=/mine",), {})
    assert [opt.partition("=")[0] for opt in options] == ["-XX:SharedArchiveFile"]
    assert len(notes) == 1
    assert "java.library.path" in notes[0]


@pytest.mark.parametrize("opt", ["-Xshare:off", "-XX:SharedArchiveFile=/mine.jsa"])
def test_java_opts_that_choose_class_sharing_win(jar: Path, opt: str) -> None:
    """JAVA_OPTS that turn class sharing off or bring their own archive: ours is left out."""
    cache = open_startup_cache(make_cache(jar.parent / "c", jar), jar)
    options, notes = startup_options(cache, jar, (opt,), {})
    assert [o.partition("=")[0] for o in options] == ["-Djava.library.path"]
    assert notes == ["JAVA_OPTS choose class sharing: the cached class archive is not used"]


def test_a_cache_without_libraries_or_archive_adds_nothing(jar: Path) -> None:
    """A cache without libraries (another CPU) nor archive adds no option, and says why."""
    cache = open_startup_cache(make_cache(jar.parent / "c", jar, native=False, archive=False), jar)
    assert startup_options(cache, jar, (), {}) == (
        [],
        [
            "the cache holds no native libraries (none for this platform)",
            "the cache holds no class archive (prepare-jvm said why)",
        ],
    )


def test_the_archive_is_left_out_for_a_jar_the_jvm_would_refuse_it_for(jar: Path) -> None:
    """The same bytes at another path, or with another modification second: the JVM would not
    map the archive (and say nothing), so it is not passed, with the reason."""
    cache = open_startup_cache(make_cache(jar.parent / "c", jar), jar)
    moved = jar.parent / "elsewhere.jar"
    moved.write_bytes(jar.read_bytes())
    _, notes = startup_options(cache, moved, (), {})
    assert notes == [
        f"the cached class archive is not used: it was written for the jar at "
        f"{os.path.realpath(jar)}, this one is at {os.path.realpath(moved)}"
    ]
    stat = jar.stat()
    os.utime(jar, (stat.st_atime, stat.st_mtime + 2))
    _, notes = startup_options(cache, jar, (), {})
    assert notes == [
        f"the cached class archive is not used: {jar} has another size or modification time "
        "than when it was written"
    ]
    link = jar.parent / "link.jar"
    link.symlink_to(jar)
    os.utime(jar, (stat.st_atime, stat.st_mtime))
    assert startup_options(cache, link, (), {})[1] == []


def test_a_route_bound_otherwise_refuses_the_archive() -> None:
    """One route bound to another method (the bridge's Schema) is enough, and is named."""
    sessions = ("POST", "/4/sessions", "RapidsHandler$StartSession4", "exec")
    expected = [
        (*sessions, "InputSchemaV4", "SessionIdV4"),
        ("GET", "/3/Cloud", "C", "s", "I", "O"),
    ]
    archived = [(*sessions, "Schema", "Schema"), ("GET", "/3/Cloud", "C", "s", "I", "O")]
    compare_routes(expected, list(expected))
    with pytest.raises(StartupCacheError, match=r"2 route\(s\) otherwise.*POST /4/sessions"):
        compare_routes(expected, archived)


@pytest.mark.parametrize("body", [b"", b"{}", b'{"routes": []}', b'{"routes": [{"url": 1}]}'])
def test_an_unreadable_route_table_is_an_error(body: bytes) -> None:
    """What H2O answers instead of a route table refuses the archive, never a traceback."""
    with pytest.raises(StartupCacheError):
        parse_routes(body)


def test_a_cds_archive_in_java_opts_is_warned_about(
    jar: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """JAVA_OPTS that map a class-data-sharing archive get a warning naming the danger."""
    caplog.set_level(logging.INFO, logger="h2o_k8s_discovery.jvm.startup_cache")
    opts = ("-XX:SharedArchiveFile=/opt/h2o.jsa",)
    cached_startup_options(None, explicit=False, jar=jar, java_opts=opts, env={})
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "/opt/h2o.jsa" in warning.getMessage()
    assert "kills the whole cloud" in warning.getMessage()
    assert "did not prove" in warning.getMessage()


def test_the_identity_is_the_content_not_the_time_or_path(tmp_path: Path) -> None:
    """The same bytes elsewhere with another time are the same jar; one changed byte of an
    entry's content, at the same size, is another."""
    first = make_jar(tmp_path / "a.jar", {"water/H2O.class": b"\xca\xfe"})
    second = tmp_path / "elsewhere.jar"
    second.write_bytes(first.read_bytes())
    os.utime(second, (1_000_000_000, 1_000_000_000))
    assert JarIdentity.of(first) == JarIdentity.of(second)
    changed = make_jar(tmp_path / "b.jar", {"water/H2O.class": b"\xca\xff"})
    assert changed.stat().st_size == first.stat().st_size
    assert JarIdentity.of(changed) != JarIdentity.of(first)


def test_a_zip64_jar_is_read(tmp_path: Path) -> None:
    """A jar with zip64 end records (H2O's has over 65535 entries) has an identity too."""
    path = tmp_path / "big.jar"
    with zipfile.ZipFile(path, "w", allowZip64=True) as archive:
        for index in range(70_000):
            archive.writestr(f"e/{index}", b"")
    assert JarIdentity.of(path).size == path.stat().st_size


@pytest.mark.parametrize("content", [b"", b"not a zip", b"PK\x05\x06" + b"\xff" * 18])
def test_what_is_not_a_jar_has_no_identity(tmp_path: Path, content: bytes) -> None:
    """A file that is no zip archive (or claims impossible offsets) raises NotAJarError."""
    path = tmp_path / "h2o.jar"
    path.write_bytes(content)
    with pytest.raises(NotAJarError):
        JarIdentity.of(path)


@pytest.mark.parametrize(
    "manifest",
    [
        {"jar": {"path": "/h2o.jar", "size": 1, "mtime_ns": 1}},  # an archive recorded at exit
        {"format": 2, "jar": {}, "native_libraries": []},  # libraries only
    ],
)
def test_a_cache_of_an_older_format_is_refused(jar: Path, manifest: dict[str, object]) -> None:
    """A cache with an unproven archive, or of libraries only, is not used: prepared anew."""
    directory = make_cache(jar.parent / "c", jar)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StartupCacheError, match="another format"):
        open_startup_cache(directory, jar)


def test_a_cache_made_for_another_jar_is_refused(jar: Path) -> None:
    """Replacing the jar (same path, new bytes) makes its old cache unusable, with the reason."""
    directory = make_cache(jar.parent / "c", jar)
    make_jar(jar, {"water/H2O.class": b"\xca\xfe\xba\xbe", "another": b"x"})
    with pytest.raises(StartupCacheError, match="made for another jar"):
        open_startup_cache(directory, jar)


@pytest.mark.parametrize(
    "manifest",
    ["", "{", '{"format": 3}', '{"format": 3, "jar": {"size": 1}}', '{"format": 3, "jar": []}'],
)
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
    caplog.set_level(logging.INFO, logger="h2o_k8s_discovery.jvm.startup_cache")
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
        startup_options=["-Djava.library.path=/c/native"],
    )
    assert argv[:3] == ["java", "-Djava.library.path=/c/native", "-Xmx1g"]


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
    """The layout is one directory: native/, classes.jsa and manifest.json."""
    cache = StartupCache(tmp_path)
    assert (cache.native_dir.name, cache.class_archive.name, cache.manifest.name) == (
        "native",
        "classes.jsa",
        "manifest.json",
    )


def test_a_cache_path_the_kernel_refuses_is_only_logged(
    jar: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cache directory whose name is too long for the file system: no option, a warning."""
    caplog.set_level(logging.INFO, logger="h2o_k8s_discovery.jvm.startup_cache")
    directory = jar.parent / ("c" * 300)
    assert cached_startup_options(directory, explicit=True, jar=jar, java_opts=(), env={}) == []
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "unreadable" in record.getMessage()
