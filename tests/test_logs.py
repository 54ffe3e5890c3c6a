"""Log output: JSON lines for collectors, with the numbers of each phase as fields."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from h2o_k8s_discovery import logs


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    """``logs.configure`` replaces the root logger's handlers and level: put them back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_extra_fields() -> None:
    """A summary line is one JSON object with its message and its structured numbers."""
    stream = io.StringIO()
    logs.configure("INFO", stream, json_lines=True)
    logging.getLogger("h2o_k8s_discovery.test").info(
        "lookup over: %s", "found 3", extra={"event": "lookup", "found": 3, "elapsed_s": 1.5}
    )
    entry = json.loads(stream.getvalue())
    assert entry["message"] == "lookup over: found 3"
    assert entry["level"] == "info"
    assert entry["logger"] == "h2o_k8s_discovery.test"
    assert (entry["event"], entry["found"], entry["elapsed_s"]) == ("lookup", 3, 1.5)


def test_plain_text_on_a_terminal() -> None:
    """Without JSON the line is plain text a person reads."""
    stream = io.StringIO()
    logs.configure("WARNING", stream, json_lines=False)
    logging.getLogger("h2o_k8s_discovery.test").warning("careful: %d", 7)
    logging.getLogger("h2o_k8s_discovery.test").info("not shown")
    text = stream.getvalue()
    assert "WARNING h2o_k8s_discovery.test: careful: 7" in text
    assert "not shown" not in text
