# Two commands on a fresh machine: `make run` and `make test`. Each installs what it needs.
# What they install is uv.lock, exactly (`uv sync --frozen`): the versions the suite passed with.
# uv itself is bootstrapped with pip into .tools/, pinned, where it is missing.
PYTHON     ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
UV_VERSION := 0.13.9
TOOLS      := .tools
UV         := $(TOOLS)/bin/uv
LATEST     := .venv-latest
# never let uv fetch a Python of its own: the machine's python3 is the one we were asked to use
export UV_PYTHON_DOWNLOADS := never
# test worker processes (pytest-xdist): the suite mostly waits on subprocesses, so more workers than cores
# pays; `make test WORKERS=0` runs it in one process (e.g. to read a failure's output in order)
WORKERS    ?= 3

.PHONY: run test test-latest lock bench lint install clean sandbox test-tools

$(UV):
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q uv==$(UV_VERSION)

# --compile-bytecode: the sandbox shows the venv read-only, so no process in it can cache bytecode; without it
# each sandboxed pytest compiled pytest itself from source (0.17 s of a 0.33 s run, in every gate run)
$(STAMP): pyproject.toml uv.lock Makefile | $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync -q --frozen --compile-bytecode --extra dev --python $(PYTHON)
	touch $(STAMP)

install: $(STAMP)

# After changing a range in pyproject.toml: write uv.lock anew, then `make test` before committing it.
lock: $(UV)
	$(UV) lock --python $(PYTHON)

# Code an agent wrote runs under bubblewrap; install it where we can (root on Debian).
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -qq bubblewrap >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null)); \
	  else echo "bubblewrap (bwrap) is missing: install it, e.g. 'sudo apt-get install bubblewrap'"; exit 1; fi; }

run: install sandbox
	$(VENV)/bin/cockpit demo

# The cockpit's terminal and browser tests drive tmux and Debian's headless chromium (no browser download).
test-tools:
	@missing=""; for t in tmux:tmux chromium:chromium; do command -v $${t%%:*} >/dev/null 2>&1 || missing="$$missing $${t#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -qq $$missing >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq $$missing >/dev/null)); \
	  else echo "missing:$$missing (the TUI tests need them): install them, e.g. 'sudo apt-get install$$missing'"; exit 1; fi; fi

test: install sandbox test-tools
	$(PY) -m pytest -q -n $(WORKERS)

# The suite against the newest releases pyproject.toml admits, in an environment of its own, so drift
# (a new SDK, a new Textual) is seen here before a user's fresh install sees it. Prints what differs
# from the lock first.
test-latest: $(UV) sandbox test-tools
	rm -rf $(LATEST)
	$(UV) venv -q --python $(PYTHON) $(LATEST)
	VIRTUAL_ENV=$(LATEST) $(UV) pip install -q --compile-bytecode --upgrade --resolution highest -e '.[dev]'
	@VIRTUAL_ENV=$(LATEST) $(UV) pip freeze --exclude-editable | $(LATEST)/bin/python scripts/lockdiff.py uv.lock
	COCKPIT_DEPS=latest $(LATEST)/bin/python -m pytest -q -p no:cacheprovider -n $(WORKERS)

bench: install sandbox
	$(PY) -m bench

# ruff, and the layers of docs/architecture.md ([tool.importlinter] in pyproject.toml)
lint: install
	$(VENV)/bin/ruff check cockpit tests bench
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) $(LATEST) $(TOOLS) build *.egg-info
