# Every target builds .venv itself when it is missing or older than pyproject.toml.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-engines hunt fidelity lint bench loadtest clean image screenshots

# Says what it does before each step and lets pip print its own progress (a first install
# downloads about 150 MB and takes a minute or more; a silent one looked hung).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || { echo "==> [1/3] creating $(VENV) with $(PYTHON)"; \
	  $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV); }
	@echo "==> [2/3] upgrading pip in $(VENV)"
	$(BIN)/python -m pip install --upgrade --progress-bar on pip
	@echo "==> [3/3] installing cobrowse (editable) with its test and loadtest dependencies"
	$(BIN)/python -m pip install --progress-bar on -e '.[test,loadtest]'
	@touch $(STAMP)
	@echo "==> $(VENV) is ready (made again only when pyproject.toml changes)"

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

# The timing-sensitive files alone (marked serial in tests/conftest.py), then the rest two at a
# time, a file per worker: most tests wait on browsers and clusters, so two share 2 cores well.
# Both runs always run; exit status 5 is "nothing selected" (PYTEST_ARGS naming tests of one
# kind only).
test: $(STAMP) $(CHROMIUM) $(ENGINES) $(FIREFOX_NODE)
	@ok=0; \
	$(BIN)/python -m pytest -q -m 'serial and not engines_full' $(PYTEST_ARGS) || [ $$? -eq 5 ] || ok=1; \
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m 'not serial and not engines_full' $(PYTEST_ARGS) || [ $$? -eq 5 ] || ok=1; \
	exit $$ok

# The whole cross-engine matrix, 15 tests: -m '' lifts pyproject's "not engines_full" (make test runs the 5 unmarked ones).
test-engines: $(STAMP) $(CHROMIUM) $(ENGINES) $(FIREFOX_NODE)
	$(BIN)/python -m pytest -q -m '' tests/browser/test_browser_engines.py $(PYTEST_ARGS)

# Every file with property tests (hypothesis) of the gateway, router, proxy and load
# generator, each test with COBROWSE_HUNT_EXAMPLES examples (20,000; make test runs 100): a
# hunt for what the usual count misses. About 20 minutes on 2 cores at the default.
HUNT_FILES = $(shell grep -l '@given' tests/gateway/test_*.py tests/router/test_*.py tests/proxy/test_*.py tests/loadtest/test_*.py)
hunt: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m '' --hypothesis-profile hunt $(HUNT_FILES) $(PYTEST_ARGS)

# Per engine, the corpus pages whose DOM, computed styles and screenshot (under 1 % of
# pixels) match between visitor and viewer (tests/support/fidelity.py; ~8 min on 2 cores).
fidelity: $(STAMP) $(CHROMIUM) $(ENGINES) $(FIREFOX_NODE)
	$(BIN)/python -m tests.support.fidelity --json bench/fidelity.json $(FIDELITY_ARGS)

# The screenshots in docs/ (a real local cluster and Chromium; tests/support/screenshots.py).
screenshots: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m tests.support.screenshots docs

# Exits 1 when a target is missed; `make bench BENCH_ARGS=--report-only` only reports.
bench: $(STAMP)
	$(BIN)/python -m loadtest bench --json bench/results.json $(BENCH_ARGS)

loadtest: $(STAMP)
	$(BIN)/python -m loadtest run --scenario drain --sessions 100 --duration 90 --report loadtest-report
	$(BIN)/python -m loadtest run --scenario drain --sessions 100 --duration 45 --workers 2 --report loadtest-report-workers

lint: $(STAMP)
	$(BIN)/ruff check gateway router proxy loadtest tests
	$(BIN)/ruff format --check gateway router proxy loadtest tests

# The container image (Dockerfile): podman, else docker, whichever answers `info` (a CLI
# whose daemon is down does not count). Not part of `make test`; tests/test_image.py runs
# the Dockerfile's install steps into a clean venv instead. PYTHON_IMAGE is the base image
# (a registry mirror, or a Debian bookworm image: the Dockerfile installs python3 when the
# base has none), e.g. `make image PYTHON_IMAGE=mirror.example.com/library/python:3.11-slim`;
# IMAGE_BUILD_ARGS adds engine flags (`--build-arg HTTPS_PROXY=...`).
IMAGE ?= cobrowse:0.1.0
PYTHON_IMAGE ?= docker.io/library/python:3.11-slim-bookworm
CONTAINER_ENGINE ?=
image:
	@engine="$(CONTAINER_ENGINE)"; found=; \
	if [ -z "$$engine" ]; then \
	  for c in podman docker; do \
	    command -v $$c >/dev/null 2>&1 || continue; found="$$found $$c"; \
	    if $$c info >/dev/null 2>&1; then engine=$$c; break; fi; \
	  done; \
	elif ! command -v "$$engine" >/dev/null 2>&1; then \
	  echo "make image: CONTAINER_ENGINE=$$engine is not a command on PATH." >&2; exit 1; \
	elif ! "$$engine" info >/dev/null 2>&1; then \
	  found=" $$engine"; engine=; \
	fi; \
	if [ -z "$$engine" ]; then \
	  if [ -n "$$found" ]; then \
	    echo "make image: found$$found, but \`info' fails: no container daemon or socket answers." >&2; \
	    echo "  docker: start the daemon (sudo systemctl start docker) and check you may use" >&2; \
	    echo "  its socket (DOCKER_HOST, or membership of the docker group); podman needs no" >&2; \
	    echo "  daemon as root or rootless (on macOS: podman machine start)." >&2; \
	  else \
	    echo "make image: no container engine: neither podman nor docker is on PATH." >&2; \
	    echo "  Install one (Debian: sudo apt-get install podman), or name yours with" >&2; \
	    echo "  CONTAINER_ENGINE=/path/to/engine make image." >&2; \
	  fi; \
	  echo "  The build pulls $(PYTHON_IMAGE); without Docker Hub, point" >&2; \
	  echo "  PYTHON_IMAGE at a mirror or a Debian base (docs/operations.md, The image)." >&2; \
	  exit 1; \
	fi; \
	echo "make image: building $(IMAGE) from $(PYTHON_IMAGE) with $$engine"; \
	$$engine build --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) $(IMAGE_BUILD_ARGS) --tag $(IMAGE) --file Dockerfile .

clean:
	rm -rf $(VENV) .run .pytest_cache .hypothesis
