"""Using a cloud as a user does, with H2O's own Python client (``h2o``, the jar's version).

Two workflows. ``client_session``: what a data scientist does first, step by step: connect,
upload a frame large enough to be split across the nodes, train a GBM and a GLM, predict, read
model metrics, remove what was made, and end the session as the client does at exit
(``DELETE /4/sessions/<id>``); after each step ``check`` runs, so a caller can assert the cloud
is still whole. ``run_client``: upload a frame (which locks the cloud) or read it back, in a
process of its own (``python -m tests.support.h2o_client upload|read URL FRAME``), so that the
client's global connection and its exit hooks never outlive the cloud inside the test process.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h2o
from h2o.estimators import H2OGeneralizedLinearEstimator, H2OGradientBoostingEstimator

from tests.support.paths import PYTHONPATH

#: Rows of the uploaded frame: about 10 MB of CSV. H2O keeps an upload in chunks of 4 MB, parses
#: each into a chunk of the frame, and stripes chunks across the nodes: three chunks, three homes.
ROWS = 250_000
FEATURES = ("x1", "x2", "x3", "x4")

#: Rows of the frame ``run_client`` uploads: 0..999.
REPORTED_ROWS = 1000

Check = Callable[[str], None]


def training_columns(rows: int = ROWS, seed: int = 7) -> dict[str, list[Any]]:
    """Four numeric features and a binary label that depends on two of them."""
    rng = random.Random(seed)
    columns: dict[str, list[Any]] = {name: [] for name in (*FEATURES, "y")}
    for _ in range(rows):
        values = [rng.gauss(0, 1) for _ in FEATURES]
        for name, value in zip(FEATURES, values, strict=True):
            columns[name].append(round(value, 6))
        columns["y"].append("yes" if values[0] + 0.5 * values[1] + rng.gauss(0, 0.5) > 0 else "no")
    return columns


def chunk_homes(frame_id: str) -> set[int]:
    """The indexes of the nodes holding the frame's chunks (``/3/FrameChunks``)."""
    answer = h2o.api(f"GET /3/FrameChunks/{frame_id}")
    return {int(chunk["node_idx"]) for chunk in answer["chunks"]}


def client_session(url: str, check: Check, *, nodes: int) -> dict[str, float]:
    """Run the whole session against ``url``; returns the metrics read on the way."""
    with _connection_closed_at_end():
        return _session(url, check, nodes=nodes)


@contextmanager
def _connection_closed_at_end() -> Iterator[None]:
    with warnings.catch_warnings():
        # The client warns about optional packages (pandas, polars) it would use if present.
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            # A session left open would be closed by the client's atexit handler, which opens
            # one first if there is none: against a cloud that is gone by then, a traceback.
            connection = h2o.connection()
            if connection is not None and connection.connected:
                connection.close()


def frame_report(action: str, url: str, frame_id: str) -> dict[str, Any]:
    """``upload``: a frame of ``x`` = 0..999 named ``frame_id``; ``read``: that frame again.

    What the cloud says about it: ``{"rows": N, "sum": S}`` (the sum computed on the cloud).
    """
    with _connection_closed_at_end():
        h2o.connect(url=url, verbose=False)
        if action == "upload":
            frame = h2o.H2OFrame({"x": list(range(REPORTED_ROWS))}, destination_frame=frame_id)
        else:
            frame = h2o.get_frame(frame_id)
        return {"rows": frame.nrow, "sum": frame["x"].sum()}


def run_client(action: str, url: str, frame_id: str, *, home: Path) -> dict[str, Any]:
    """``frame_report`` in a process of its own, with ``home`` as its HOME."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.h2o_client", action, url, frame_id],
        capture_output=True,
        text=True,
        timeout=180,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": PYTHONPATH, "HOME": str(home)},
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _session(url: str, check: Check, *, nodes: int) -> dict[str, float]:
    h2o.connect(url=url, verbose=False, strict_version_check=True)
    check("connect")
    frame = h2o.H2OFrame(training_columns(), column_types={"y": "enum"})
    assert frame.nrows == ROWS
    homes = chunk_homes(frame.frame_id)
    assert len(homes) == nodes, f"chunks only on nodes {sorted(homes)} of {nodes}"
    check("upload and parse")
    gbm = H2OGradientBoostingEstimator(ntrees=10, max_depth=3, seed=1)
    gbm.train(x=list(FEATURES), y="y", training_frame=frame)
    check("train GBM")
    glm = H2OGeneralizedLinearEstimator(family="binomial", seed=1)
    glm.train(x=list(FEATURES), y="y", training_frame=frame)
    check("train GLM")
    predictions = gbm.predict(frame)
    assert predictions.nrows == ROWS
    check("predict")
    metrics = {
        "gbm_auc": float(gbm.model_performance(frame).auc()),
        "glm_auc": float(glm.model_performance(frame).auc()),
    }
    assert metrics["gbm_auc"] > 0.8, metrics
    assert metrics["glm_auc"] > 0.8, metrics
    check("model metrics")
    made = {frame.frame_id, predictions.frame_id}
    h2o.remove([predictions, gbm, glm, frame])
    left = {f["frame_id"]["name"] for f in h2o.api("GET /3/Frames")["frames"]}
    assert not made & left, left
    assert h2o.api("GET /3/Models")["models"] == []
    check("remove objects")
    # What the client's atexit handler does: DELETE /4/sessions/<id>.
    h2o.connection().close()
    check("end the session")
    return metrics


if __name__ == "__main__":
    print(json.dumps(frame_report(*sys.argv[1:4])), flush=True)
