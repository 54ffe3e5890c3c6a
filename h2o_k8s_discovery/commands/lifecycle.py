"""The states of ``run``, the outcomes of their steps, and the exit statuses they lead to.

``commands/run.py`` runs one step per state and asks ``Entrypoint.decide`` what follows; this
module is the vocabulary of that table. The one non-obvious decision: the early start is a path,
not a flag. A pod goes through ``PLAIN_PATH`` or ``EARLY_PATH``, chosen once, and the states in
which a JVM runs without peers (``JVM_WAITING``) are named here, so that only the decision, not
every step, has to know that such a JVM is killed (``discard``) when the path ends early.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import Enum

from h2o_k8s_discovery import exit_codes


class State(Enum):
    """Where ``run`` is in its lifecycle; each state is one step."""

    LAUNCH_EARLY = "launch-early"
    """The JVM starts on a flatfile pipe, before the lookup."""
    SERVE_PROBES = "serve-probes"
    """The probe server binds the API port."""
    FIND_PEERS = "find-peers"
    """The lookup, then the agreement with the peers."""
    HAND_OVER = "hand-over"
    """The peers go into the pipe of the JVM that waits for them."""
    LAUNCH = "launch"
    """The flatfile is written and the JVM started on it."""
    RUN = "run"
    """The JVM runs with its peers, watched, until it exits."""
    DISCARD = "discard"
    """The early-started JVM is killed: it never got its peers."""


#: The states in order when every step is done, without and with the early start.
PLAIN_PATH = (State.SERVE_PROBES, State.FIND_PEERS, State.LAUNCH, State.RUN)
EARLY_PATH = (State.LAUNCH_EARLY, State.SERVE_PROBES, State.FIND_PEERS, State.HAND_OVER, State.RUN)
#: The states of the early path in which a JVM runs that has no peers (yet, or ever).
JVM_WAITING = frozenset({State.SERVE_PROBES, State.FIND_PEERS, State.HAND_OVER, State.DISCARD})


@dataclass(frozen=True, slots=True)
class Done:
    """The step did what it is for."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The step could not be done; ``status`` is the exit status that says why."""

    status: int


@dataclass(frozen=True, slots=True)
class Stopped:
    """A stop signal ended the step (or the JVM that waited for its peers died)."""


@dataclass(frozen=True, slots=True)
class JvmExited:
    """The JVM has ended with ``status``; ``by_itself``: nobody here killed it."""

    status: int
    by_itself: bool = True


Outcome = Done | Failed | Stopped | JvmExited


@dataclass(frozen=True, slots=True)
class Exit:
    """The end of the lifecycle, with the container's exit status."""

    status: int


class StopCause(Enum):
    """Why the running H2O is being stopped."""

    SIGNAL = "signal"
    CLOUD_LOST = "cloud-lost"
    NOT_FORMED = "not-formed"


#: The exit status of a pod whose H2O was stopped for these causes (a signal: the JVM's own).
STATUS_OF_STOP = {
    StopCause.CLOUD_LOST: exit_codes.CLOUD_LOST,
    StopCause.NOT_FORMED: exit_codes.LOOKUP_FAILED,
}


@dataclass(frozen=True, slots=True)
class Stopping:
    """A stop of the running H2O under way: why, and the task that ends with its status."""

    cause: StopCause
    task: asyncio.Task[int]
