# `make run` and `make test` are the two entry points; both install into .venv first
# (`make run` the runtime dependencies only, `make test` the test tools too), from the lock
# files in requirements/: exact versions, every file checked against its sha256.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install install-test browser run check test test-cluster unit sim soak bench lock clean

install: $(STAMP)

LOCKS := requirements/run.txt requirements/build.txt
# jobwire itself is installed without build isolation, so its build backend comes from the
# lock too, and without deps, so nothing outside the lock is resolved.
INSTALL_SELF := $(BIN)/pip install --quiet --no-deps --no-build-isolation -e .

$(STAMP): pyproject.toml $(LOCKS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes $(foreach f,$(LOCKS),-r $(f))
	$(INSTALL_SELF)
	touch $(STAMP)

install-test: $(TEST_STAMP)

# From npm, in one install (one without the other would remove it): the official AsyncAPI
# parser (tests/unit/test_asyncapi.py) and the Standard Webhooks library the Node receiver
# uses (tests/integration/test_receivers.py). Exact versions.
NODE_TEST_PACKAGES := @asyncapi/parser@3.6.3 standardwebhooks@1.1.1

$(TEST_STAMP): $(STAMP) requirements/test.txt
	$(BIN)/pip install --quiet --require-hashes -r requirements/test.txt
	npm install --no-save --no-audit --no-fund --loglevel=error --prefix $(VENV)/node $(NODE_TEST_PACKAGES)
	touch $(TEST_STAMP)

run: install
	$(BIN)/jobwire dev

# The portal test drives Debian's chromium (no browser download from elsewhere).
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium for the portal browser test"; \
	  (apt-get update -q && apt-get install -y -q chromium) >/dev/null || \
	  { echo "could not install chromium: run 'apt-get install chromium' as root" >&2; exit 1; }; }

# Lint and strict types (service/ only: the package users install).
check: install-test
	$(BIN)/ruff check service tests bench examples
	$(BIN)/mypy

# Every test but the cluster's under coverage (branches, and the processes the tests start),
# then the report: it lists what no test ran and fails below the floor in pyproject.toml.
test: install-test browser check
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest --ignore=tests/cluster
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report

# Fault tests on a local 3-broker KRaft cluster: broker failover, dispatcher rebalancing, API
# replicas behind a round-robin proxy (tests/cluster/, docs/scaling.md). CI runs them too.
test-cluster: install-test
	$(BIN)/pytest tests/cluster

unit: install-test
	$(BIN)/pytest tests/unit

# The dispatcher's deterministic simulation alone (tests/sim; make test runs it too, 400
# schedules); JOBWIRE_SIM_SEED=n runs one seed again. soak: 20,000 schedules.
sim: install-test
	$(BIN)/pytest tests/sim

soak: install-test
	JOBWIRE_SIM_SCHEDULES=20000 $(BIN)/pytest tests/sim

bench: install
	$(BIN)/python bench/log_throughput.py

# Refreshes the lock files to the newest releases within pyproject.toml's ranges (pip-tools,
# in a throwaway venv). test.txt is resolved first; run.txt and build.txt are constrained by
# it, so a package has one version in all three. Commit the result after `make test` passes.
LOCK_VENV := $(VENV)-lock
COMPILE := $(LOCK_VENV)/bin/pip-compile --quiet --upgrade --generate-hashes --allow-unsafe \
	--strip-extras --no-emit-find-links

lock:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet pip-tools
	$(COMPILE) --extra test -o requirements/test.txt pyproject.toml
	$(COMPILE) --extra tracing -c requirements/test.txt -o requirements/run.txt pyproject.toml
	$(COMPILE) --all-build-deps --only-build-deps -c requirements/test.txt \
	  -o requirements/build.txt pyproject.toml
	rm -rf $(LOCK_VENV)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .coverage .coverage.*
