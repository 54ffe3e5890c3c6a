"""The ``h2o-k8s-discovery`` command: argument parsing, logging, exit statuses.

Every error this package raises on purpose is turned into one clear line on stderr and an exit
status from ``exit_codes`` here, at the boundary; nothing below prints or exits.

Each command imports what it runs only once chosen: every module loaded stays in a long-lived
process's memory, and ``run`` and ``sidecar`` must keep OpenSSL out before asyncio comes in
(``footprint.py``). So nothing at the top of this module may import asyncio, aiohttp or dnspython.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from h2o_k8s_discovery import exit_codes, logs
from h2o_k8s_discovery.config.h2o_args import read_h2o_args
from h2o_k8s_discovery.config.rest_security import load_rest_access
from h2o_k8s_discovery.config.settings import Settings, launch_settings_from_env
from h2o_k8s_discovery.errors import (
    ConfigError,
    FlatfileError,
    H2OK8sDiscoveryError,
    StartupCacheError,
)
from h2o_k8s_discovery.flatfile.format import render_flatfile, write_flatfile
from h2o_k8s_discovery.footprint import keep_openssl_out

log = logging.getLogger("h2o_k8s_discovery")

T = TypeVar("T")

#: Signals that end a command cleanly when it is not running the JVM.
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console command; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    status: int = args.handler(args, os.environ)
    _flush_or_let_go()
    return status


def _flush_or_let_go() -> None:
    """Flush stdout and stderr; if their reader is gone, drop them rather than the status.

    Otherwise the interpreter's own final flush fails with EPIPE and exits 120, hiding the
    JVM's status.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="h2o-k8s-discovery",
        description="Form H2O-3 clusters on Kubernetes from a headless Service's DNS records. "
        "Settings come from the environment, under H2O's own variable names.",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    discover = commands.add_parser(
        "discover",
        help="look up the peers and print them (or write the flatfile)",
        description="Poll the headless Service's DNS until the expected count or the timeout "
        "is met and print the peers, one ip:port a line. Usable as an init container.",
    )
    discover.add_argument("--once", action="store_true", help="a single poll, then print")
    discover.add_argument(
        "--write", metavar="PATH", type=Path, help="also write the flatfile to PATH, atomically"
    )
    discover.set_defaults(handler=_discover)

    run = commands.add_parser(
        "run",
        help="the container entrypoint: look up peers, start H2O, serve readiness",
        description="Serve the probes, look up the peers, write the flatfile and start the "
        "H2O JVM as PID 1. Arguments after -- are passed to h2o.jar unchanged.",
    )
    run.add_argument("h2o_args", nargs=argparse.REMAINDER, help="extra h2o.jar arguments")
    run.set_defaults(handler=_run)

    sidecar = commands.add_parser(
        "sidecar",
        help="serve the probes for an H2O container started by someone else",
        description="Read the flatfile (written by discover --write), watch the local H2O "
        "node's /3/Cloud and serve /kubernetes/isLeaderNode, /healthz and /status as run "
        "does, for pods that keep H2O's stock image. Launches nothing.",
    )
    sidecar.set_defaults(handler=_sidecar)

    prepare = commands.add_parser(
        "prepare-jvm",
        help="build the JVM start-up cache for H2O_JAR (once, e.g. in an image build)",
        description="Unpack the jar's native libraries into H2O_JVM_STARTUP_CACHE (default: "
        "<H2O_JAR>.startup), with a manifest naming the jar by its content. run then starts H2O "
        "sooner, and H2O copies nothing into its temp directory. Takes a few seconds.",
    )
    prepare.add_argument(
        "--if-missing",
        action="store_true",
        help="keep a cache already made for this jar (default: always rebuild)",
    )
    prepare.set_defaults(handler=_prepare_jvm)

    demo = commands.add_parser(
        "demo",
        help="form a real H2O cluster on this machine, as on Kubernetes",
        description="Start an embedded DNS server publishing a simulated headless Service and "
        "N entrypoints (the real run path) on 127.0.0.1, then show the cluster they form.",
    )
    demo.add_argument("--nodes", type=_node_count, default=3, help="pods to start (default 3)")
    demo.add_argument(
        "--exit-when-ready", action="store_true", help="stop everything once one leader is ready"
    )
    demo.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for a leader")
    demo.add_argument("--h2o-port", type=int, default=54321, help="first pod's H2O port")
    demo.add_argument("--api-port", type=int, default=8081, help="first pod's probe port")
    demo.add_argument("--jar", type=Path, help="h2o.jar to use (default: fetched and cached)")
    demo.add_argument("--heap", default="768m", help="-Xmx of each JVM (default 768m)")
    demo.set_defaults(handler=_demo)
    return parser


def _node_count(raw: str) -> int:
    if not raw.isdecimal() or not 1 <= int(raw) <= 16:
        raise argparse.ArgumentTypeError("expected a whole number from 1 to 16")
    return int(raw)


def _discover(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = load_settings(env)
    if settings is None:
        return exit_codes.USAGE
    logs.configure(settings.log_level)
    from h2o_k8s_discovery.discovery.lookup import discover_peers  # noqa: PLC0415

    outcome = run_until_signal(discover_peers(settings.lookup, once=args.once))
    if isinstance(outcome, signal.Signals):
        log.warning("lookup stopped by %s", outcome.name)
        return exit_codes.SIGNAL_BASE + outcome
    shortfall = outcome.shortfall(settings.lookup)
    if shortfall is not None:
        log.error("nothing written (H2O_NODE_LOOKUP_FAIL_ON_TIMEOUT): %s", shortfall)
        return exit_codes.LOOKUP_FAILED
    sys.stdout.write(render_flatfile(outcome.peers))
    sys.stdout.flush()
    if args.write is not None:
        try:
            write_flatfile(args.write, outcome.peers)
        except FlatfileError as err:
            log.error("%s", err)
            return exit_codes.FLATFILE
        log.info("flatfile written to %s", args.write)
    return exit_codes.OK


def _run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = load_settings(env)
    if settings is None:
        return exit_codes.USAGE
    logs.configure(settings.log_level)
    extra: list[str] = args.h2o_args
    if extra[:1] == ["--"]:
        extra = extra[1:]
    try:
        h2o_args = read_h2o_args(extra, settings.launch.pod_ip)
        access = load_rest_access(settings.rest, extra)
        extra = _h2o_args_without_passwords(settings, extra)
    except ConfigError as err:
        print(f"h2o-k8s-discovery: {err}", file=sys.stderr)
        return exit_codes.USAGE
    if not access.https:
        keep_openssl_out()
    import asyncio  # noqa: PLC0415

    from h2o_k8s_discovery.commands.run import run_entrypoint  # noqa: PLC0415

    try:
        return asyncio.run(run_entrypoint(settings, extra, env, h2o_args=h2o_args, access=access))
    except ConfigError as err:  # a setting this pod cannot honour; nothing was started
        print(f"h2o-k8s-discovery: {err}", file=sys.stderr)
        return exit_codes.USAGE


def _sidecar(_args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = load_settings(env)
    if settings is None:
        return exit_codes.USAGE
    logs.configure(settings.log_level)
    try:
        access = load_rest_access(settings.rest, None)  # the sidecar sees no H2O arguments
    except ConfigError as err:
        print(f"h2o-k8s-discovery: {err}", file=sys.stderr)
        return exit_codes.USAGE
    if not access.https:
        keep_openssl_out()
    import asyncio  # noqa: PLC0415

    from h2o_k8s_discovery.commands.sidecar import run_sidecar  # noqa: PLC0415

    return asyncio.run(run_sidecar(settings, access))


def _h2o_args_without_passwords(settings: Settings, extra: list[str]) -> list[str]:
    """The jar's arguments, with ``-jks``'s keystore swapped for one H2O opens without
    ``-jks_pass`` when ``H2O_JKS_PASSWORD_FILE`` is set (``jvm/keystore.py``); ``ConfigError``."""
    if "-jks_pass" in extra:
        log.warning(
            "-jks_pass is among the h2o.jar arguments: H2O logs its arguments, this password "
            "with them; mount the password as a file and set H2O_JKS_PASSWORD_FILE instead"
        )
    if settings.rest.jks_password_file is None:
        return extra
    from h2o_k8s_discovery.jvm.keystore import with_private_keystore  # noqa: PLC0415

    return with_private_keystore(
        extra, settings.rest.jks_password_file, settings.launch.flatfile.parent
    )


def _prepare_jvm(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    try:
        launch = launch_settings_from_env(env)
    except ConfigError as err:
        print(f"h2o-k8s-discovery: {err}", file=sys.stderr)
        return exit_codes.USAGE
    if launch.startup_cache is None:
        print("h2o-k8s-discovery: H2O_JVM_STARTUP_CACHE=off: nothing to prepare", file=sys.stderr)
        return exit_codes.USAGE
    logs.configure("INFO", json_lines=False)
    # Imported here: preparing is a build step, not part of a pod's memory.
    from h2o_k8s_discovery.jvm.startup_prepare import (  # noqa: PLC0415
        ensure_startup_cache,
        prepare_startup_cache,
    )

    prepare = ensure_startup_cache if args.if_missing else prepare_startup_cache
    try:
        prepare(
            launch.jar,
            launch.startup_cache,
            progress=lambda step: log.info("prepare-jvm: %s", step),
        )
    except StartupCacheError as err:
        print(f"h2o-k8s-discovery prepare-jvm: {err}", file=sys.stderr)
        return exit_codes.FAILURE
    log.info("prepare-jvm: JVM start-up cache for %s ready in %s", launch.jar, launch.startup_cache)
    return exit_codes.OK


def _demo(args: argparse.Namespace, _env: Mapping[str, str]) -> int:
    logs.configure("WARNING", json_lines=False)
    # Imported here: the demo's DNS server and jar fetcher have no place in a pod's memory.
    from h2o_k8s_discovery.commands.demo import Demo, DemoOptions  # noqa: PLC0415

    options = DemoOptions(
        nodes=args.nodes,
        h2o_base_port=args.h2o_port,
        api_base_port=args.api_port,
        timeout=args.timeout,
        exit_when_ready=args.exit_when_ready,
        jar=args.jar,
        heap=args.heap,
    )
    try:
        outcome = run_until_signal(Demo(options, sys.stdout).run())
    except H2OK8sDiscoveryError as err:
        print(f"h2o-k8s-discovery demo: {err}", file=sys.stderr)
        return exit_codes.FAILURE
    if isinstance(outcome, signal.Signals):
        print(f"stopped by {outcome.name}", file=sys.stderr)
        return exit_codes.OK if outcome is signal.SIGINT else exit_codes.SIGNAL_BASE + outcome
    return outcome


def load_settings(env: Mapping[str, str]) -> Settings | None:
    """The settings, or ``None`` after printing every problem to stderr."""
    try:
        return Settings.from_env(env)
    except ConfigError as err:
        print(f"h2o-k8s-discovery: {err}", file=sys.stderr)
        return None


def run_until_signal(work: Coroutine[Any, Any, T]) -> T | signal.Signals:
    """Run ``work``; SIGTERM, SIGINT or SIGHUP cancel it and are returned instead.

    Needed because as PID 1 the process has no default action for these signals: without a
    handler a ``docker stop`` would wait for the SIGKILL.
    """
    import asyncio  # noqa: PLC0415

    async def supervised() -> T | signal.Signals:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(work)
        received: list[signal.Signals] = []

        def stop(signum: signal.Signals) -> None:
            received.append(signum)
            task.cancel()

        for signum in _STOP_SIGNALS:
            loop.add_signal_handler(signum, stop, signum)
        try:
            return await task
        except asyncio.CancelledError:
            if received:
                return received[0]
            raise
        finally:
            for signum in _STOP_SIGNALS:
                loop.remove_signal_handler(signum)

    return asyncio.run(supervised())
