"""A per-jar cache that lets the H2O JVM start sooner: the jar's native libraries, unpacked once.

H2O's XGBoost extension copies ~157 MB of native libraries out of the jar into
``java.io.tmpdir`` on every start (and leaves them behind when the JVM is killed, filling a
crash-looping pod's ``/tmp``), unless ``System.loadLibrary`` finds them on ``java.library.path``
first. ``startup_prepare`` unpacks them once (at image build time, or by ``make jar``); ``run``
puts that directory first on ``java.library.path`` when the cache was made for this very jar.

The non-obvious decision: no class-data-sharing (CDS) archive, although one saves another 1-2 s.
H2O binds each REST route to the first public method named ``exec`` (or the handler's name) in
``Class.getMethods()`` whose second parameter is a ``Schema``; a handler such as
``RapidsHandler$StartSession4`` (``POST /4/sessions``) has two, its own and the compiler's
bridge ``exec(int, Schema)``. ``getMethods()`` promises no order, and classes mapped from an
archive list their methods in another order than classes parsed from the jar, so with the
archive the bridge wins, H2O tries to instantiate the abstract ``Schema``, and ``H2O.fail`` kills
every JVM of the cloud. No recording run can make that order safe, so the archive is not made;
``JAVA_OPTS`` that bring one are warned about. The libraries are the jar's own bytes: using them
changes nothing H2O computes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from h2o_k8s_discovery.errors import NotAJarError, StartupCacheError
from h2o_k8s_discovery.jvm.jar_identity import JarIdentity

log = logging.getLogger(__name__)

NATIVE_DIR = "native"
MANIFEST = "manifest.json"
#: The manifest's layout; a cache of another format (one with a CDS archive) is refused.
FORMAT = 2
#: java.library.path's built-in default on 64-bit Linux (after $LD_LIBRARY_PATH): kept behind
#: ours so that libraries found there before are still found.
_DEFAULT_LIBRARY_PATH = ("/usr/java/packages/lib", "/usr/lib64", "/lib64", "/lib", "/usr/lib")
#: Options that make the JVM map a CDS archive other than the JDK's own.
_CDS_ARCHIVE_OPTIONS = ("-XX:SharedArchiveFile=", "-XX:ArchiveClassesAtExit=")


@dataclass(frozen=True, slots=True)
class StartupCache:
    """A prepared cache directory; its libraries may be missing (none for this CPU)."""

    directory: Path

    @property
    def native_dir(self) -> Path:
        return self.directory / NATIVE_DIR

    @property
    def manifest(self) -> Path:
        return self.directory / MANIFEST


def manifest_for(identity: JarIdentity, java: str, libraries: Sequence[str]) -> str:
    """The manifest text ``prepare-jvm`` writes; the JDK is recorded for people, not checked
    (native libraries do not depend on it)."""
    manifest = {
        "format": FORMAT,
        "jar": identity.to_json(),
        "java": java,
        "native_libraries": list(libraries),
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
    return cache


def identify_jar(jar: Path) -> JarIdentity:
    """``jar``'s identity, or a ``StartupCacheError`` saying why it has none."""
    try:
        return JarIdentity.of(jar)
    except OSError as err:
        raise StartupCacheError(f"cannot read {jar}: {err.strerror}") from err
    except NotAJarError as err:
        raise StartupCacheError(f"{jar} is not a jar (zip archive): {err}") from err


def startup_options(
    cache: StartupCache, java_opts: Sequence[str], env: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """The JVM options ``cache`` contributes, and a note for each part left out (and why)."""
    if any(opt.startswith("-Djava.library.path=") for opt in java_opts):
        return [], ["JAVA_OPTS sets java.library.path: the cached libraries are not used"]
    if not cache.native_dir.is_dir():
        return [], ["the cache holds no native libraries (none for this platform)"]
    return ["-Djava.library.path=" + library_path(cache.native_dir, env)], []


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
    options, notes = startup_options(cache, java_opts, env)
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
    """A CDS archive of H2O's classes in ``JAVA_OPTS`` can kill the cloud (module docstring)."""
    chosen = [opt for opt in java_opts if opt.startswith(_CDS_ARCHIVE_OPTIONS)]
    if chosen:
        log.warning(
            "JAVA_OPTS maps a class-data-sharing archive (%s): H2O then binds some REST routes "
            "to the wrong handler method, and the first POST /4/sessions (H2O's Python client "
            "sends it) kills the whole cloud; remove the option",
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
