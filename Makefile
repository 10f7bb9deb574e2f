# `make run` and `make test` are the two entry points; both install into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser run test unit bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: install
	$(BIN)/jobwire dev

# The portal test drives Debian's chromium (no browser download from elsewhere).
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium for the portal browser test"; \
	  (apt-get update -q && apt-get install -y -q chromium) >/dev/null || \
	  { echo "could not install chromium: run 'apt-get install chromium' as root" >&2; exit 1; }; }

test: install browser
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

bench: install
	$(BIN)/python bench/log_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
