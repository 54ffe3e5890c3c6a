"""``python -m h2o_k8s_discovery``: the same as the ``h2o-k8s-discovery`` command."""

import sys

from h2o_k8s_discovery.commands.cli import main

sys.exit(main())
