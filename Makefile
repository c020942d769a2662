# Two commands for a fresh machine with Python 3.11 (see README):
#   make demo   installs into .venv, then runs the end-to-end demo
#   make test   installs into .venv, then runs the whole test suite
# A second run finds .venv up to date (the stamp below) and starts in seconds.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.fastreid_vld-installed

.PHONY: install demo test lint clean-venv

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements.txt -r requirements-dev.txt
	# fastreid's metadata pins torch 1.13: take its code only; compat.py adapts it
	$(PIP) install -q --no-deps fastreid==1.4.0
	$(PIP) install -q --no-deps --no-build-isolation -e .
	# fast-reid's rank metrics in Cython, compiled outside site-packages (fastreid_vld/compat.py)
	$(PY) -c "from fastreid_vld.compat import build_rank_extensions as b; print('rank extensions in', b())"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py

test: $(STAMP)
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(PY) -m ruff check .

clean-venv:
	rm -rf $(VENV)
