"""Every exception this package raises on purpose.

One hierarchy, so callers of the library can catch ``H2OK8sDiscoveryError`` and the CLI can map
each kind to an exit status without catching anything it did not mean to.
"""

from __future__ import annotations

from collections.abc import Sequence


class H2OK8sDiscoveryError(Exception):
    """Base of every error raised by this package on purpose."""


class ConfigError(H2OK8sDiscoveryError):
    """One or more settings are invalid; ``problems`` lists each one, ready to print."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("invalid settings:\n" + "\n".join(f"  - {p}" for p in self.problems))


class DnsQueryError(H2OK8sDiscoveryError):
    """A DNS query failed in a way worth retrying (SERVFAIL, timeout, unreachable server).

    ``kind`` is a short, stable label (``servfail``, ``timeout``, ``unreachable``, ``malformed``)
    used to log each distinct condition once and to count errors by kind.
    """

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}")


class FlatfileError(H2OK8sDiscoveryError):
    """The flatfile could not be written (directory missing and not creatable, disk full...)."""


class ProbeServerError(H2OK8sDiscoveryError):
    """The probe port cannot be served (taken by another process, or not allowed)."""


class LaunchError(H2OK8sDiscoveryError):
    """The JVM could not be started; ``exit_status`` follows the shell's convention (127/126)."""

    def __init__(self, message: str, exit_status: int) -> None:
        self.exit_status = exit_status
        super().__init__(message)


class StartupCacheError(H2OK8sDiscoveryError):
    """The JVM start-up cache is missing, made for another jar, or could not be prepared."""


class NotAJarError(H2OK8sDiscoveryError, ValueError):
    """A file given as the H2O jar is no zip archive whose central directory can be read."""
