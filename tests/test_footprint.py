"""What the long-lived commands keep out of memory: OpenSSL, and any module before it is needed.

Each check runs in a fresh interpreter: in this one, pytest and the other tests have imported
ssl and hashlib long ago, and ``keep_openssl_out`` rightly leaves a process that has them alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def fresh_python(code: str) -> Any:
    """Run ``code`` in a new interpreter; return the JSON it prints last. Fails on stderr."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return json.loads(done.stdout.splitlines()[-1])


def test_the_command_line_imports_no_heavy_module() -> None:
    """Choosing a command costs nothing: ``run`` can still keep OpenSSL out after that."""
    loaded = fresh_python(
        """
        import json, sys
        import h2o_k8s_discovery.commands.cli
        heavy = ("asyncio", "aiohttp", "dns", "tenacity", "ssl", "hashlib", "_hashlib")
        print(json.dumps([name for name in heavy if name in sys.modules]))
        """
    )
    assert loaded == []


def test_run_and_sidecar_work_without_openssl() -> None:
    """Their modules import, /metrics renders, nothing maps libssl, hashes come out right."""
    found = fresh_python(
        """
        import hashlib, json, sys
        from pathlib import Path
        from h2o_k8s_discovery.footprint import keep_openssl_out
        keep_openssl_out()
        import h2o_k8s_discovery.commands.run, h2o_k8s_discovery.commands.sidecar
        import aiohttp.connector, hashlib, hmac
        from h2o_k8s_discovery.server import metrics
        from h2o_k8s_discovery.server.node_state import NodeState
        rendered = metrics.render(NodeState())
        maps = Path("/proc/self/maps").read_text()
        print(json.dumps({
            "ssl": sys.modules["ssl"] is None and aiohttp.connector.ssl is None,
            "libssl": "libssl" in maps,
            "libcrypto": "libcrypto" in maps,
            "hashlib_without_openssl": sys.modules["_hashlib"] is None,
            "sha256": hashlib.sha256(b"h2o").hexdigest(),
            "hmac": hmac.new(b"k", b"h2o", "sha256").hexdigest(),
            "metrics": rendered.endswith(b"# EOF\\n"),
            "exposition": "prometheus_client.exposition" in sys.modules,
        }))
        """
    )
    assert found["ssl"]
    assert not found["libssl"]
    assert found["metrics"]
    assert not found["exposition"]
    # libcrypto only stays when this Python takes its hashes from OpenSSL alone.
    assert found["libcrypto"] is not found["hashlib_without_openssl"]
    assert found["sha256"] == "37a068536b430cf7ceb9cd44d4cf245446cb17bbcc44acaca0379d008ff2aef4"
    assert found["hmac"] == "922b7a0d723692bb6df6f62466f8648ea678d7051b2f63bf8e72704cff90a4bc"


def test_hashlib_keeps_openssl_when_python_has_no_builtin_md5() -> None:
    """On a build whose md5 comes from OpenSSL only, hashlib keeps OpenSSL, silently."""
    found = fresh_python(
        """
        import json, sys
        sys.modules["_md5"] = None  # as on a build without CPython's own md5
        from h2o_k8s_discovery.footprint import keep_openssl_out
        keep_openssl_out()
        from hashlib import md5
        print(json.dumps({
            "md5": md5(b"h2o").hexdigest(),
            "openssl": sys.modules["_hashlib"] is not None,
            "ssl": sys.modules["ssl"] is None,
        }))
        """
    )
    assert found == {"md5": "6caa47f7b3472053b152f84ce72c182c", "openssl": True, "ssl": True}


def test_a_process_that_has_openssl_keeps_it() -> None:
    """Already imported (a library user's program, a test run): nothing is taken away."""
    found = fresh_python(
        """
        import hashlib, json, ssl, sys
        from h2o_k8s_discovery.footprint import keep_openssl_out
        keep_openssl_out()
        import ssl, _hashlib
        print(json.dumps([sys.modules["ssl"] is ssl, sys.modules["_hashlib"] is _hashlib]))
        """
    )
    assert found == [True, True]
