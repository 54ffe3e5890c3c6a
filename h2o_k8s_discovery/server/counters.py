"""The numbers behind ``/metrics`` that nothing else reads: counted by ``run``, never decided on.

The one non-obvious decision: they are plain attributes, counted where the event happens and
read by the metrics collector at scrape time, not ``prometheus_client`` counters: the package
imports no metrics library until the first scrape (``metrics.py``), and a pod that is never
scraped carries none.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Counters:
    """What the lookup and the launches did, for ``/metrics``."""

    #: DNS polls that got an answer.
    dns_polls: int = 0
    #: DNS polls that failed, by kind (``servfail``, ``timeout``...).
    dns_errors: dict[str, int] = field(default_factory=dict)
    #: Seconds the last lookup took (``None`` before it ended).
    lookup_seconds: float | None = None
    #: H2O JVMs started by this entrypoint.
    jvm_starts: int = 0

    def count_dns_error(self, kind: str) -> None:
        self.dns_errors[kind] = self.dns_errors.get(kind, 0) + 1
