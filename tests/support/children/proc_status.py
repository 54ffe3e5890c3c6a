"""Stand-in child: write what it inherited (ignored/blocked signals, process group) as JSON."""

import json
import os
import sys

fields = {}
with open("/proc/self/status") as f:
    for line in f:
        key, _, value = line.partition(":")
        if key in ("SigIgn", "SigBlk"):
            fields[key] = int(value.strip(), 16)
fields["pid"] = os.getpid()
fields["pgid"] = os.getpgrp()
tmp = f"{sys.argv[1]}.tmp"
with open(tmp, "w") as f:
    json.dump(fields, f)
os.rename(tmp, sys.argv[1])
