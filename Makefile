# Every target builds .venv itself when it is missing or older than pyproject.toml.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-engines fidelity lint bench loadtest clean image screenshots

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,loadtest]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m router up

# Debian's Chromium for the browser tests (Playwright's own browser download does not work
# here); Playwright drives it through executable_path. Installed once, as root or with sudo.
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	@echo "installing Debian's chromium for the browser tests"
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium

# Firefox ESR and WebKitGTK for the cross-engine tests (tests/browser/test_browser_engines.py):
# Debian's firefox-esr, driven over WebDriver BiDi by puppeteer-core (pinned in
# tests/support/firefox/, no browser download), and WebKitWebDriver + MiniBrowser under Xvfb.
FIREFOX ?= /usr/bin/firefox-esr
WEBKIT_DRIVER ?= /usr/bin/WebKitWebDriver
XVFB ?= /usr/bin/Xvfb
ENGINES := $(FIREFOX) $(WEBKIT_DRIVER) $(XVFB)
$(ENGINES):
	@echo "installing Debian's firefox-esr, webkit2gtk-driver and xvfb for the cross-engine tests"
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
	    firefox-esr webkit2gtk-driver xvfb

FIREFOX_NODE := tests/support/firefox/node_modules/.package-lock.json
$(FIREFOX_NODE): tests/support/firefox/package-lock.json
	@command -v npm >/dev/null || { if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends nodejs npm; }
	cd tests/support/firefox && npm ci --ignore-scripts --no-audit --no-fund --silent

test: $(STAMP) $(CHROMIUM) $(ENGINES) $(FIREFOX_NODE)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The whole cross-engine matrix, 13 tests: -m '' lifts pyproject's "not engines_full" (make test runs the 3 unmarked ones).
test-engines: $(STAMP) $(CHROMIUM) $(ENGINES) $(FIREFOX_NODE)
	$(BIN)/python -m pytest -q -m '' tests/browser/test_browser_engines.py $(PYTEST_ARGS)

# Per engine, the corpus pages whose DOM, computed styles and screenshot (under 1 % of
# pixels) match between visitor and viewer (tests/support/fidelity.py; ~8 min on 2 cores).
fidelity: $(STAMP) $(CHROMIUM) $(ENGINES) $(FIREFOX_NODE)
	$(BIN)/python -m tests.support.fidelity --json bench/fidelity.json $(FIDELITY_ARGS)

# The screenshots in docs/ (a real local cluster and Chromium; tests/support/screenshots.py).
screenshots: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m tests.support.screenshots docs

bench: $(STAMP)
	$(BIN)/python -m loadtest bench --json bench/results.json

loadtest: $(STAMP)
	$(BIN)/python -m loadtest run --scenario drain --sessions 100 --duration 90 --report loadtest-report
	$(BIN)/python -m loadtest run --scenario drain --sessions 100 --duration 45 --workers 2 --report loadtest-report-workers

lint: $(STAMP)
	$(BIN)/ruff check gateway router proxy loadtest tests
	$(BIN)/ruff format --check gateway router proxy loadtest tests

# The container image (Dockerfile): podman, else docker. Not part of `make test`.
IMAGE ?= cobrowse:0.1.0
CONTAINER_ENGINE ?= $(shell command -v podman 2>/dev/null || command -v docker 2>/dev/null)
image:
	@test -n "$(CONTAINER_ENGINE)" || { echo "make image needs podman or docker" >&2; exit 1; }
	$(CONTAINER_ENGINE) build --tag $(IMAGE) --file Dockerfile .

clean:
	rm -rf $(VENV) .run .pytest_cache .hypothesis
