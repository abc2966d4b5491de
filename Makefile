# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-$(shell sha256sum pyproject.toml | cut -c1-16)
TEST_STAMP := $(VENV)/.test-stamp-$(shell sha256sum pyproject.toml | cut -c1-16)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False
export ANONYMIZED_TELEMETRY := False

.PHONY: run test install install-test index lint typecheck unit eval bench audit soak browser clean

run: $(STAMP)
	$(BIN)/advisor index
	$(BIN)/advisor serve

install: $(STAMP)

# torch first, pinned, so nothing later pulls a CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	rm -f $(VENV)/.stamp-*
	touch $@

install-test: $(TEST_STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test]'
	rm -f $(VENV)/.test-stamp-*
	touch $@

test: install-test browser lint typecheck unit eval

lint: $(TEST_STAMP)
	$(BIN)/ruff check app tests
	$(BIN)/ruff format --check app tests

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

unit: $(TEST_STAMP)
	$(BIN)/pytest

# The eval gate: fails when a metric of the held-out test split falls below its floor in
# evals/thresholds.toml or a critical one drops against evals/baseline.json.
eval: $(TEST_STAMP)
	$(BIN)/advisor eval --split test --gate

index: $(STAMP)
	$(BIN)/advisor index

bench: $(STAMP)
	$(BIN)/advisor bench

# Needs PyPI's per-version JSON API (or OSV); fails loudly when it cannot check a package.
audit: $(VENV)/.audit-stamp
	$(BIN)/pip freeze --exclude-editable | sed 's/+cpu$$//' > $(VENV)/audit-requirements.txt
	$(BIN)/pip-audit --strict --disable-pip --no-deps -r $(VENV)/audit-requirements.txt

# The long soak (60 s at 32 clients, then a burst); writes bench/soak.md. `make test` runs 12 s.
soak: $(TEST_STAMP)
	SOAK_SECONDS=60 $(BIN)/pytest tests/test_soak.py -s

$(VENV)/.audit-stamp: $(STAMP)
	$(BIN)/pip install --quiet -e '.[audit]'
	touch $@

# The browser test needs Chromium; install Debian's when missing and we are root.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not installed: the browser test will say why it skips"; }

clean:
	rm -rf $(VENV) index/chroma index/manifest.json
