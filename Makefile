# Two entry points for a fresh machine: `make demo` and `make test`. Everything they need is
# installed by the targets themselves (a venv, the h2o jar in a cache, Debian packages as root).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
NODES ?= 3
# checkov pins packaging below 24, which pytest and hatchling cannot use: it gets its own venv.
CHECKOV_VENV ?= .venv-checkov

.PHONY: setup system-deps jar lint checkov test test-quick demo bench clean

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
	$(PY) -m h2o_k8s_discovery.jar
	H2O_JAR="$$($(PY) -m h2o_k8s_discovery.jar --quiet)" \
	  $(VENV)/bin/h2o-k8s-discovery prepare-jvm --if-missing \
	  || echo "warning: no JVM start-up cache; H2O will start without it" >&2

lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The whole suite, slow and root-only tests included (they skip with a reason when not root).
test: setup system-deps jar lint $(CHECKOV_VENV)/.installed
	$(VENV)/bin/pytest

# A quick local run: no JVM, no long waits.
test-quick: setup
	$(VENV)/bin/pytest -m 'not slow'

demo: setup jar
	$(VENV)/bin/h2o-k8s-discovery demo --nodes $(NODES)

bench: setup system-deps jar
	$(PY) bench/discovery.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
