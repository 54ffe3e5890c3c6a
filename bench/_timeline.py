"""Where the time goes: one pod's start-up as moments on the run's timeline (seconds since start).

Read from three sources, none of which the bench has to ask while the run goes on:

- the entrypoint's JSON log lines (ours only): the probe server up, the lookup's start and end
  (``event: lookup``), the agreement (``event: agreement``), the flatfile handed to H2O
  (``event: flatfile``), the JVM spawned ("started java as pid"), the formed cloud seen
  (``event: formed``);
- H2O's own log lines (both): its ``main`` begun ("----- H2O started -----"), its first
  "Cloud of size N formed" (the heartbeat runs: the node has a cloud, if only of itself), the
  first cloud of the full size (consensus as this node sees it), "H2O started in N ms" (REST up);
- the reference's own lines from ``water.k8s`` (``HH:MM:SS.mmm [main] INFO water.k8s...``):
  its probe server up, the lookup's start and its end ("Using the following pods");
- the bench's 150 ms poll: when the pod's ``/3/Cloud`` first showed the full cloud with
  consensus, and when its readiness answer last changed (its final value);
- the kubelet-like prober (ready-gated DNS): its first probe, and when the pod entered and left
  the Service's records.

The non-obvious decision: H2O logs local time to the millisecond without a zone and the
entrypoint UTC; both are turned into seconds since the run's ``wall0`` (``time.time()`` at
start), so the two clocks agree to the millisecond on one machine.
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from bench._kubelet import EndpointChange, ProbeResult

#: The moments of one pod, in the order they normally happen; absent ones are simply missing.
EVENTS = (
    "probes up",
    "lookup start",
    "first probe",
    "published",
    "lookup end",
    "agreement end",
    "hand-over",
    "JVM spawned",
    "H2O main",
    "heartbeat",
    "REST up",
    "cloud of N",
    "formed seen",
    "consensus (poll)",
    "final readiness",
    "withdrawn",
)

_OURS_MESSAGES = {
    "serving probes on port": "probes up",
    "looking up ": "lookup start",
    "started java as pid": "JVM spawned",
}
_OURS_EVENTS = {
    "lookup": "lookup end",
    "agreement": "agreement end",
    "flatfile": "hand-over",
    "formed": "formed seen",
}
_H2O_LINE = re.compile(
    r"^(\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) .* INFO water\.default: "
    r"(?:(----- H2O started)|H2O started in \d+ms|Cloud of size (\d+) formed)"
)

_K8S_LINE = re.compile(
    r"^(\d\d:\d\d:\d\d\.\d{3}) \[main\] INFO  water\.k8s\.\S+ - "
    r"(?:(Kubernetes REST API services successfully started)|(Initializing H2O Kubernetes)"
    r"|(Using the following pods))"
)

Moments = dict[str, float]


def _utc_seconds(stamp: str) -> float:
    """``2026-12-01T19:21:46.187Z`` as a POSIX time."""
    parsed = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    return parsed.replace(tzinfo=datetime.UTC).timestamp()


def _local_seconds(stamp: str, year: int) -> float:
    """H2O's ``12-01 19:22:08.512`` (local time, no year) as a POSIX time."""
    return datetime.datetime.strptime(f"{year}-{stamp}", "%Y-%m-%d %H:%M:%S.%f").timestamp()


def _first(moments: Moments, name: str, at: float) -> None:
    moments.setdefault(name, at)


def entrypoint_moments(lines: Iterable[str], wall0: float) -> Moments:
    """Our JSON log lines' moments (the first of each kind)."""
    moments: Moments = {}
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
            at = _utc_seconds(str(entry["time"])) - wall0
        except (ValueError, KeyError, TypeError):
            continue
        event = _OURS_EVENTS.get(str(entry.get("event")))
        if event is not None:
            _first(moments, event, at)
        message = str(entry.get("message", ""))
        for prefix, name in _OURS_MESSAGES.items():
            if message.startswith(prefix):
                _first(moments, name, at)
    return moments


def _k8s_moment(line: str, wall0: float) -> tuple[str, float] | None:
    """A ``water.k8s`` line (local time of day only, taken on the day of ``wall0``)."""
    match = _K8S_LINE.match(line)
    if match is None:
        return None
    day = time.strftime("%m-%d", time.localtime(wall0))
    at = _local_seconds(f"{day} {match[1]}", time.localtime(wall0).tm_year) - wall0
    name = "probes up" if match[2] else "lookup start" if match[3] else "lookup end"
    return name, at


def h2o_moments(lines: Iterable[str], wall0: float, size: int) -> Moments:
    """H2O's log lines' moments: main begun, heartbeat (first cloud), full cloud, REST up, and
    the built-in discovery's own steps."""
    year = time.localtime(wall0).tm_year
    moments: Moments = {}
    for line in lines:
        k8s = _k8s_moment(line, wall0)
        if k8s is not None:
            _first(moments, *k8s)
            continue
        match = _H2O_LINE.match(line)
        if match is None:
            continue
        at = _local_seconds(match[1], year) - wall0
        if match[2] is not None:
            _first(moments, "H2O main", at)
        elif match[3] is not None:
            _first(moments, "heartbeat", at)
            if int(match[3]) == size:
                _first(moments, "cloud of N", at)
        else:
            _first(moments, "REST up", at)
    return moments


def prober_moments(
    index: int, results: Sequence[ProbeResult], changes: Sequence[EndpointChange]
) -> Moments:
    """The first probe, the first entry into the Service, the last withdrawal from it."""
    moments: Moments = {}
    if results:
        moments["first probe"] = results[0].at
    mine = [change for change in changes if change.pod == index]
    entered = [change.at for change in mine if change.ready]
    if entered:
        moments["published"] = entered[0]
    if mine and not mine[-1].ready:
        moments["withdrawn"] = mine[-1].at
    return moments


def pod_moments(log: Path, wall0: float, size: int) -> Moments:
    """Everything the pod's log (entrypoint and H2O interleaved) tells."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    return entrypoint_moments(lines, wall0) | h2o_moments(lines, wall0, size)


def ordered(moments: Moments) -> list[tuple[str, float]]:
    """``moments`` in ``EVENTS`` order."""
    return [(name, moments[name]) for name in EVENTS if name in moments]
