# Two commands do all the set-up on a fresh machine (see README.md):
#   make book   create .venv, install the course environment, build the HTML book
#   make test   the same set-up, then the whole test suite (smoke profile)
# Both are idempotent: the environment is reinstalled only when pyproject.toml changes, and the
# book re-executes only the chapters whose code changed.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.unsuplab-installed

# A relative mirror path would break in notebooks, which run in their own folders.
ifneq ($(strip $(UNSUPLAB_DATA_MIRROR)),)
export UNSUPLAB_DATA_MIRROR := $(abspath $(UNSUPLAB_DATA_MIRROR))
endif

.PHONY: setup book test labs browser clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 10) else "the course needs Python 3.11 (3.10+ works); found " + sys.version.split()[0] + ": install python3.11 or run make PYTHON=/path/to/python3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[course]"
	@touch $@

book: $(STAMP)
	$(VENV)/bin/jupyter-book build .
	@echo "The book is at $(CURDIR)/_build/html/index.html (open it in a browser)"

# The browser test (tests/test_browser.py) drives Debian's Chromium. Run as root where apt-get exists,
# this installs the `chromium` package (a system package: apt-get update + install). Where that is not
# possible (not root, no apt-get, no network) it says so and the browser test is skipped: it never
# fails `make test`.
APT_OPTIONS := -qq -o Acquire::Retries=0 -o Acquire::http::Timeout=20
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's chromium with apt-get (running as root) for the browser test"; \
	    apt-get update $(APT_OPTIONS) && DEBIAN_FRONTEND=noninteractive apt-get install -y $(APT_OPTIONS) chromium >/dev/null \
	      || echo "note: apt-get could not install chromium; tests/test_browser.py will be skipped"; \
	  else \
	    echo "note: no Chromium found; tests/test_browser.py will be skipped (install the chromium package to run it)"; \
	  fi; }

test: $(STAMP) browser
	UNSUPLAB_PROFILE=$${UNSUPLAB_PROFILE:-smoke} UNSUPLAB_PROGRESS=0 $(PY) -m pytest

labs: $(STAMP)
	$(PY) -m unsuplab.labs build

clean:
	rm -rf _build
