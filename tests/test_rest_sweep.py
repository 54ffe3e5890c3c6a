"""Every parameterless REST route of a real H2O JVM, with and without the start-up cache (its
proven class archive included): none may kill it. The archive the cache once held, recorded at
exit and never proven, is the negative control: it does kill H2O, and prepare-jvm's proof
refuses it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from h2o_k8s_discovery.errors import StartupCacheError
from h2o_k8s_discovery.jvm.archive_proof import h2o_routes
from h2o_k8s_discovery.jvm.jar import ensure_h2o_jar
from h2o_k8s_discovery.jvm.startup_cache import startup_options
from h2o_k8s_discovery.jvm.startup_prepare import prepare_startup_cache
from k8s_sim.h2o_jvm import BareH2O, record_cds_archive

pytestmark = pytest.mark.slow

#: What H2O logs when ``H2O.fail`` ends the JVM (and with it every JVM of its cloud).
FAILED_SCHEMA = "FATAL water.default: Failed to instantiate schema of class: water.api.Schema"


@pytest.fixture(scope="module")
def jar() -> Path:
    return ensure_h2o_jar(progress=False)


@pytest.fixture(scope="module")
def cache_options(jar: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The options ``run`` adds from a freshly prepared start-up cache: libraries and archive."""
    cache = prepare_startup_cache(jar, tmp_path_factory.mktemp("cache") / "h2o.jar.startup")
    options, notes = startup_options(cache, jar, (), {})
    assert [opt.partition("=")[0] for opt in options] == [
        "-Djava.library.path",
        "-XX:SharedArchiveFile",
    ], notes
    return options


@pytest.fixture(scope="module")
def unproven_archive(
    jar: Path, cache_options: list[str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[str]]:
    """The dynamic archive the cache once shipped, recorded at exit, and the options (the cached
    libraries) it was recorded with."""
    libraries = [opt for opt in cache_options if opt.startswith("-Djava.library.path=")]
    return record_cds_archive(jar, tmp_path_factory.mktemp("unproven"), libraries), libraries


def parameterless_get_routes(node: BareH2O) -> list[str]:
    """The GET routes H2O lists that take no path parameter and no required input field."""
    routes = node.json("/3/Metadata/endpoints")["routes"]
    schemas = {s["name"]: s for s in node.json("/3/Metadata/schemas")["schemas"]}
    found = []
    for route in routes:
        if route["http_method"] != "GET" or route["path_params"]:
            continue
        fields = schemas[route["input_schema"]]["fields"]
        if not any(f["required"] and f["direction"] != "OUTPUT" for f in fields):
            found.append(route["url_pattern"])
    return sorted(found)


def sweep(node: BareH2O) -> Iterator[tuple[str, int | None]]:
    """Each parameterless GET, then a session opened and closed as H2O's Python client does;
    yields each request with its status, stopping at the first one after which H2O is dead."""
    for path in parameterless_get_routes(node):
        status, _ = node.request("GET", path)
        yield f"GET {path}", status
        if not node.alive:
            return
    status, body = node.request("POST", "/4/sessions")
    yield "POST /4/sessions", status
    if status == 200:
        session = json.loads(body)["session_key"]
        status, _ = node.request("DELETE", f"/4/sessions/{session}")
        yield f"DELETE /4/sessions/{session}", status


@pytest.mark.parametrize("cached", [False, True], ids=["plain", "start-up cache"])
def test_no_route_kills_h2o(
    jar: Path, cache_options: list[str], tmp_path: Path, cached: bool
) -> None:
    """Every parameterless GET route, POST and DELETE /4/sessions: H2O answers each, with or
    without the shipped start-up cache, and is alive with no FATAL in its log after."""
    with BareH2O(jar, tmp_path, cache_options if cached else []) as node:
        node.wait_ready()
        answered = list(sweep(node))
        assert node.alive, f"H2O died after {answered[-1]}:\n{node.log_tail()}"
        assert len(answered) >= 30, answered
        assert all(status is not None for _, status in answered), answered
        assert answered[-2][1] == 200, answered  # a session was opened...
        assert answered[-1][1] == 200, answered  # ...and closed
        assert node.json("/3/Cloud")["cloud_size"] == 1
        log = node.log_text()
        assert " FATAL " not in log, node.log_tail()


def test_the_cds_archive_once_shipped_kills_h2o_on_a_new_session(
    jar: Path, unproven_archive: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """With a CDS archive recorded at the exit of an idle start, H2O binds POST /4/sessions to
    the bridge method and the first session kills the JVM: why an archive must be proven."""
    archive, libraries = unproven_archive
    with BareH2O(
        jar, tmp_path / "archived", [*libraries, f"-XX:SharedArchiveFile={archive}"]
    ) as node:
        node.wait_ready()
        node.request("POST", "/4/sessions")
        assert node.process is not None
        assert node.process.wait(60) != 0
        assert FAILED_SCHEMA in node.log_text()


def test_the_proof_refuses_the_archive_once_shipped(
    jar: Path, unproven_archive: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """prepare-jvm's proof, H2O's route table read on the archive, does not pass that archive:
    H2O dies answering it (the route table instantiates every route's schemas)."""
    archive, libraries = unproven_archive
    with pytest.raises(StartupCacheError, match="exited with status") as refused:
        h2o_routes(jar, tmp_path, "java", [*libraries, f"-XX:SharedArchiveFile={archive}"])
    assert "Failed to instantiate schema" in str(refused.value)
