"""A per-jar cache that lets the H2O JVM start sooner: native libraries and a class archive.

H2O's XGBoost extension copies ~157 MB of native libraries out of the jar into
``java.io.tmpdir`` on every start (and leaves them behind when the JVM is killed, filling a
crash-looping pod's ``/tmp``), unless ``System.loadLibrary`` finds them on ``java.library.path``
first. ``startup_prepare`` unpacks them once (at image build time, or by ``make jar``) and writes
a class-data-sharing archive of the classes an H2O start loads (``class_archive``); ``run`` puts
the libraries first on ``java.library.path`` and maps the archive, when the cache was made for
this very jar.

The non-obvious decision: the archive is used only as ``prepare-jvm`` proved it. A cache of an
older format (whose archive was recorded at exit and never proved: it binds ``POST /4/sessions``
to the wrong method and the first session kills the cloud) is refused, and so is the archive
when the jar is not at the path, size and modification second the archive was written for (the
JVM would silently start without it); an archive that ``JAVA_OPTS`` bring is warned about,
because nothing proved it. The libraries are the jar's own bytes: using them changes nothing H2O
computes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from h2o_k8s_discovery.errors import NotAJarError, StartupCacheError
from h2o_k8s_discovery.jvm.class_archive import ARCHIVE_FILE, ArchivedJar, mismatch
from h2o_k8s_discovery.jvm.jar_identity import JarIdentity

log = logging.getLogger(__name__)

NATIVE_DIR = "native"
MANIFEST = "manifest.json"
#: The manifest's layout; a cache of another format (1: an archive recorded at exit and never
#: proved; 2: libraries only) is refused, so that it is prepared anew.
FORMAT = 3
#: java.library.path's built-in default on 64-bit Linux (after $LD_LIBRARY_PATH): kept behind
#: ours so that libraries found there before are still found.
_DEFAULT_LIBRARY_PATH = ("/usr/java/packages/lib", "/usr/lib64", "/lib64", "/lib", "/usr/lib")
#: Options that make the JVM map a CDS archive other than the JDK's own.
_CDS_ARCHIVE_OPTIONS = ("-XX:SharedArchiveFile=", "-XX:ArchiveClassesAtExit=")
#: Options by which JAVA_OPTS decide class sharing themselves.
_CLASS_SHARING_OPTIONS = (*_CDS_ARCHIVE_OPTIONS, "-Xshare:")


@dataclass(frozen=True, slots=True)
class StartupCache:
    """A prepared cache directory; its libraries may be missing (none for this CPU)."""

    directory: Path
    #: The jar the class archive was written for; None when the cache holds no archive.
    archived_jar: ArchivedJar | None = None

    @property
    def native_dir(self) -> Path:
        return self.directory / NATIVE_DIR

    @property
    def class_archive(self) -> Path:
        return self.directory / ARCHIVE_FILE

    @property
    def manifest(self) -> Path:
        return self.directory / MANIFEST


@dataclass(frozen=True, slots=True)
class ArchiveRecord:
    """What the manifest says of the class archive: the jar it is for and the routes proven, or
    why there is none."""

    jar: ArchivedJar | None
    routes_proven: int = 0
    missing_because: str = ""

    def to_json(self) -> dict[str, object]:
        if self.jar is None:
            return {"file": None, "missing_because": self.missing_because}
        return {
            "file": ARCHIVE_FILE,
            "jar": self.jar.to_json(),
            "routes_proven": self.routes_proven,
        }


def manifest_for(
    identity: JarIdentity, java: str, libraries: Sequence[str], archive: ArchiveRecord
) -> str:
    """The manifest text ``prepare-jvm`` writes; the JDK is recorded for people, not checked
    (the JVM itself refuses an archive of another JDK, and native libraries do not depend on it)."""
    manifest = {
        "format": FORMAT,
        "jar": identity.to_json(),
        "java": java,
        "native_libraries": list(libraries),
        "class_archive": archive.to_json(),
    }
    return json.dumps(manifest, indent=2) + "\n"


def open_startup_cache(directory: Path, jar: Path) -> StartupCache:
    """The cache in ``directory`` if it was prepared for ``jar``; ``StartupCacheError`` if not."""
    cache = StartupCache(directory)
    try:
        recorded = json.loads(cache.manifest.read_text(encoding="utf-8"))
        if not isinstance(recorded, dict) or recorded.get("format") != FORMAT:
            raise StartupCacheError(
                f"the JVM start-up cache {directory} is of another format; prepare it again "
                f"for {jar}"
            )
        made_for = JarIdentity.from_json(recorded.get("jar"))
        archived_jar = _archived_jar(recorded.get("class_archive"))
    except FileNotFoundError:
        raise StartupCacheError(f"no JVM start-up cache in {directory}") from None
    except (OSError, ValueError, TypeError) as err:
        raise StartupCacheError(f"the JVM start-up cache {directory} is unreadable: {err}") from err
    current = identify_jar(jar)
    if made_for != current:
        raise StartupCacheError(
            f"the JVM start-up cache {directory} was made for another jar "
            f"({made_for.size} bytes, central directory {made_for.directory_digest[:12]}); "
            f"prepare it again for {jar}"
        )
    return StartupCache(directory, archived_jar)


def _archived_jar(record: object) -> ArchivedJar | None:
    if not isinstance(record, dict):
        raise TypeError("the manifest has no class_archive object")
    if record.get("file") is None:
        return None
    return ArchivedJar.from_json(record.get("jar"))


def identify_jar(jar: Path) -> JarIdentity:
    """``jar``'s identity, or a ``StartupCacheError`` saying why it has none."""
    try:
        return JarIdentity.of(jar)
    except OSError as err:
        raise StartupCacheError(f"cannot read {jar}: {err.strerror}") from err
    except NotAJarError as err:
        raise StartupCacheError(f"{jar} is not a jar (zip archive): {err}") from err


def startup_options(
    cache: StartupCache, jar: Path, java_opts: Sequence[str], env: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """The JVM options ``cache`` contributes, and a note for each part left out (and why)."""
    options: list[str] = []
    notes: list[str] = []
    for option, note in (
        _library_option(cache, java_opts, env),
        _archive_option(cache, jar, java_opts),
    ):
        options += [option] if option else []
        notes += [note] if note else []
    return options, notes


def _library_option(
    cache: StartupCache, java_opts: Sequence[str], env: Mapping[str, str]
) -> tuple[str | None, str | None]:
    if any(opt.startswith("-Djava.library.path=") for opt in java_opts):
        return None, "JAVA_OPTS sets java.library.path: the cached libraries are not used"
    if not cache.native_dir.is_dir():
        return None, "the cache holds no native libraries (none for this platform)"
    return "-Djava.library.path=" + library_path(cache.native_dir, env), None


def _archive_option(
    cache: StartupCache, jar: Path, java_opts: Sequence[str]
) -> tuple[str | None, str | None]:
    if cache.archived_jar is None:
        return None, "the cache holds no class archive (prepare-jvm said why)"
    if any(opt.startswith(_CLASS_SHARING_OPTIONS) for opt in java_opts):
        return None, "JAVA_OPTS choose class sharing: the cached class archive is not used"
    if not cache.class_archive.is_file():
        return None, f"the cache's class archive {cache.class_archive} is missing"
    why = mismatch(cache.archived_jar, jar)
    if why is not None:
        # The JVM would refuse it without a word; saying why here saves a hunt for lost seconds.
        return None, f"the cached class archive is not used: {why}"
    return f"-XX:SharedArchiveFile={cache.class_archive}", None


def cached_startup_options(
    directory: Path | None,
    *,
    explicit: bool,
    jar: Path,
    java_opts: Sequence[str],
    env: Mapping[str, str],
) -> list[str]:
    """What ``run`` adds to the JVM's options from the cache, each decision logged once."""
    warn_about_cds_archive(java_opts)
    if directory is None:
        log.info("JVM start-up cache off (H2O_JVM_STARTUP_CACHE)")
        return []
    try:
        cache = open_startup_cache(directory, jar)
    except StartupCacheError as err:
        # A missing cache costs seconds of start-up, not correctness: H2O starts without it.
        level = logging.WARNING if explicit or _exists(directory) else logging.INFO
        log.log(
            level, "%s; H2O starts without it (prepare one: h2o-k8s-discovery prepare-jvm)", err
        )
        return []
    options, notes = startup_options(cache, jar, java_opts, env)
    for note in notes:
        log.info("%s", note)
    log.info(
        "JVM start-up cache %s: %s",
        directory,
        " ".join(options) or "nothing to add",
        extra={"event": "startup_cache", "options": options},
    )
    return options


def warn_about_cds_archive(java_opts: Sequence[str]) -> None:
    """A CDS archive of H2O's classes in ``JAVA_OPTS`` can kill the cloud (``class_archive``)."""
    chosen = [opt for opt in java_opts if opt.startswith(_CDS_ARCHIVE_OPTIONS)]
    if chosen:
        log.warning(
            "JAVA_OPTS maps a class-data-sharing archive (%s) that prepare-jvm did not prove: "
            "with an archive H2O can bind REST routes to the wrong handler method, and then "
            "the first POST /4/sessions (H2O's Python client sends it) kills the whole cloud; "
            "remove the option (the start-up cache brings a proven archive)",
            chosen[-1],
        )


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a path the kernel refuses outright (too long, say) is not there
        return False


def library_path(first: Path, env: Mapping[str, str]) -> str:
    """``first``, then what the JVM would have searched anyway ($LD_LIBRARY_PATH, its default)."""
    inherited = [part for part in env.get("LD_LIBRARY_PATH", "").split(":") if part]
    return ":".join([str(first), *inherited, *_DEFAULT_LIBRARY_PATH])
