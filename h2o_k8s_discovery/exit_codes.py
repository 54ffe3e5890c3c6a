"""Exit statuses of the ``h2o-k8s-discovery`` command, one meaning each.

Statuses the JVM produced (its own code, 128 + signal) pass through ``run`` unchanged; these are
the ones the entrypoint itself decides. Documented in the README's table.
"""

from __future__ import annotations

OK = 0
#: Something unexpected; the log says what.
FAILURE = 1
#: A setting or a command-line argument is invalid; nothing was started.
USAGE = 2
#: The lookup failed closed: the expected peers were not found (or did not agree) in time.
LOOKUP_FAILED = 69
#: The cloud lost a member after it had formed (with H2O_EXIT_ON_CLOUD_LOSS=true).
CLOUD_LOST = 70
#: The flatfile could not be written.
FLATFILE = 73
#: The probe port is already taken by another process.
PORT_IN_USE = 75
#: The JVM could not be executed: not executable (126) or not found (127), as in a shell.
NOT_EXECUTABLE = 126
NOT_FOUND = 127
#: Added to a signal's number when a signal ended the process, as in a shell.
SIGNAL_BASE = 128
