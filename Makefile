# `make run` and `make test` are the two entry points; both install into .venv first
# (`make run` the runtime dependencies only, `make test` the test tools too).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install install-test browser run test unit bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(STAMP)

install-test: $(TEST_STAMP)

# From npm, in one install (one without the other would remove it): the official AsyncAPI
# parser (tests/unit/test_asyncapi.py) and the Standard Webhooks library the Node receiver
# uses (tests/integration/test_receivers.py). Exact versions.
NODE_TEST_PACKAGES := @asyncapi/parser@3.6.3 standardwebhooks@1.1.1

$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test]'
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

test: install-test browser
	$(BIN)/pytest

unit: install-test
	$(BIN)/pytest tests/unit

bench: install
	$(BIN)/python bench/log_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
