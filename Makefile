# Set-up and entry points. `make test` and `make demo` do all set-up on a fresh machine.
#   make install   .venv with wit and its pinned dependencies (+ Debian packages when possible)
#   make test      install, then the whole test suite (it runs `wit demo --fast`, and installs our
#                  wheel in a fresh venv without extras: tests/test_wheel_install.py)
#   make demo      install, then `wit demo`: the whole chain on a generated world, with a report
#   make doctor    check this machine (`wit doctor`)
#   make lock      re-freeze constraints.txt after changing a pin in pyproject.toml

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP_VERSION := 26.3
# Debian packages the project uses: WordNet 3.0 (query list), Chromium (HTML report screenshots),
# shellcheck (infra script lint), jemalloc (the crawl's allocator, core/malloc.py).
SYSTEM_PACKAGES := wordnet-base chromium shellcheck libjemalloc2
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install system-deps test demo doctor lock clean

install: $(STAMP) system-deps

# Reinstalls only when the dependency files change; a re-run of `make test` goes straight to pytest.
$(STAMP): pyproject.toml constraints.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==$(PIP_VERSION)"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# Installs missing Debian packages when we are root (or have password-less sudo); otherwise
# says exactly what to run. Tests that need a missing package then fail or skip with that hint.
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "wit: not a Debian/Ubuntu machine; install the equivalents of:$$missing (see README, 'System packages')"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo"; else \
	  echo "wit: missing Debian packages:$$missing -- run: sudo apt-get update && sudo apt-get install -y$$missing"; exit 0; fi; \
	echo "wit: installing Debian packages:$$missing"; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null

test: install
	WIT_QUIET=1 $(PY) -m pytest $(PYTEST_ARGS)

demo: install
	$(VENV)/bin/wit demo --out out/demo

doctor: install
	$(VENV)/bin/wit doctor

lock: $(STAMP)
	{ sed -n '1,3p' constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -v '^wit[= ]'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
