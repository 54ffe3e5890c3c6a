"""Use an H2O cloud as a user does, with H2O's own Python client, and report what it saw.

``h2o_client.py upload URL FRAME``: uploads a frame of 1000 rows (which locks the cloud) and
``h2o_client.py read URL FRAME``: computes the sum of that frame's column on the cloud. Each
prints one JSON line last: ``{"rows": N, "sum": S}``. Run as its own process so the client's
global connection and its exit hooks never outlive the cloud inside the test process.
"""

from __future__ import annotations

import json
import sys

import h2o  # H2O ships its client without type hints

ROWS = 1000


def main(action: str, url: str, frame_id: str) -> None:
    h2o.connect(url=url, verbose=False)
    if action == "upload":
        frame = h2o.H2OFrame({"x": list(range(ROWS))}, destination_frame=frame_id)
    else:
        frame = h2o.get_frame(frame_id)
    total = frame["x"].sum()
    print(json.dumps({"rows": frame.nrow, "sum": total}), flush=True)
    h2o.connection().close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
