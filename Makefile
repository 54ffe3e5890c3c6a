# Two entry points for a fresh machine: `make demo` and `make test`. Everything they need is
# installed by the targets themselves (a venv, the h2o jar in a cache, Debian packages as root).
VENV ?= .venv
FLOORS_VENV ?= .venv-floors
PYTHON ?= python3
PY := $(VENV)/bin/python
NODES ?= 3
IMAGE ?= h2o-k8s:3.46.0.12
# checkov pins packaging below 24, which pytest and hatchling cannot use: it gets its own venv.
CHECKOV_VENV ?= .venv-checkov

.PHONY: setup system-deps jar lint checkov test test-quick test-floors test-image image demo bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

$(CHECKOV_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q 'checkov>=3.2,<4'
	touch $@

# The manifests' security checks; tests/test_checkov.py compares them to the accepted list.
checkov: $(CHECKOV_VENV)/.installed
	$(CHECKOV_VENV)/bin/checkov -d docker/kubernetes --framework kubernetes secrets --compact --quiet \
	  || true

system-deps:
	bash scripts/install-system-deps.sh

# The jar (fetched once), then its JVM start-up cache next to it (made once per jar). H2O starts
# without the cache too, only slower: a failed preparation is reported, not fatal (its own test,
# tests/test_startup_cache_jvm.py, fails on it).
jar: setup
	$(PY) -m h2o_k8s_discovery.jvm.jar
	H2O_JAR="$$($(PY) -m h2o_k8s_discovery.jvm.jar --quiet)" \
	  $(VENV)/bin/h2o-k8s-discovery prepare-jvm --if-missing \
	  || echo "warning: no JVM start-up cache; H2O will start without it" >&2

lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The whole suite, slow and root-only tests included (they skip with a reason when not root),
# then the quick suite again on the lowest dependency versions pyproject allows.
test: setup system-deps jar lint $(CHECKOV_VENV)/.installed
	$(VENV)/bin/pytest
	$(MAKE) test-floors

# The runtime dependencies pinned to their floors (scripts/floors.py), the development tools
# resolved as usual, in a venv of its own; then the quick suite on them. uv comes with the
# dev extra; --seed puts pip in the venv, which the wheel-building tests call.
test-floors: setup
	$(PY) scripts/floors.py > $(FLOORS_VENV).constraints
	$(VENV)/bin/uv venv -q --seed --allow-existing --python $(PYTHON) $(FLOORS_VENV)
	VIRTUAL_ENV=$(FLOORS_VENV) $(VENV)/bin/uv pip install -q -e '.[dev]' -c $(FLOORS_VENV).constraints
	$(FLOORS_VENV)/bin/python -c "import aiohttp, dns.version, tenacity, prometheus_client; print('floors:', 'aiohttp', aiohttp.__version__, 'dnspython', dns.version.version)"
	$(FLOORS_VENV)/bin/pytest -m 'not slow'

# A quick local run: no JVM, no long waits.
test-quick: setup
	$(VENV)/bin/pytest -m 'not slow'

# The image from docker/Dockerfile with your Docker (BuildKit) and its registry access.
image:
	DOCKER_BUILDKIT=1 docker build -f docker/Dockerfile -t $(IMAGE) .

# The image built and run the way CI does it, without any registry (as root; see tests/image/):
# Debian stand-ins for the base images, a private dockerd, three podman containers in simulated pods.
test-image: setup system-deps jar
	$(VENV)/bin/pytest tests/image

demo: setup jar
	$(VENV)/bin/h2o-k8s-discovery demo --nodes $(NODES)

bench: setup system-deps jar
	$(PY) bench/discovery.py

clean:
	rm -rf $(VENV) $(FLOORS_VENV) $(FLOORS_VENV).constraints $(CHECKOV_VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
