# Two commands on a fresh machine: `make run` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test bench lint install clean sandbox test-tools

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

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
	$(PY) -m pytest -q

bench: install sandbox
	$(PY) -m bench

lint: install
	$(VENV)/bin/ruff check cockpit tests bench

clean:
	rm -rf $(VENV) build *.egg-info
