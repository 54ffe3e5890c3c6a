"""Keeping secrets out of logs and error messages.

Users pass passwords to H2O on its command line (``-jks_pass``) or in JAVA_OPTS
(``-Djavax.net.ssl.keyStorePassword=...``); the entrypoint logs the command it starts and
quotes refused settings, so both go through ``redacted`` first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: Option names whose value must never be shown: -jks_pass, -Dx.password=, --token=, ...
_SECRET = re.compile(r"pass|secret|token|credential|private", re.IGNORECASE)
HIDDEN = "***"


def redacted(argv: Sequence[str]) -> list[str]:
    """``argv`` with the values of password-like options replaced by ``***``.

    Covers ``-jks_pass VALUE`` (a flag whose name looks secret takes the next word) and
    ``-Dsome.password=VALUE`` / ``--token=VALUE`` (a secret-looking name before ``=``).
    """
    shown: list[str] = []
    hide_next = False
    for word in argv:
        if hide_next:
            shown.append(HIDDEN)
            hide_next = False
            continue
        name, equals, _ = word.partition("=")
        if word.startswith("-") and _SECRET.search(name):
            if equals:
                shown.append(f"{name}={HIDDEN}")
                continue
            hide_next = True
        shown.append(word)
    return shown


def redacted_text(text: str) -> str:
    """``text`` (a setting's raw value) with secret-looking options hidden, words kept apart."""
    words = text.split()
    shown = redacted(words)
    if shown == words:
        return text
    return " ".join(shown)
