# Every target works on a fresh clone with only Python 3.11, pip and make.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint typecheck clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch lies on this machine's disk; install it first so that
	# nothing resolves a CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/accord demo

test: $(STAMP)
	$(PY) -m pytest -n 2 -q
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

bench: $(STAMP)
	@for script in bench/[!_]*.py; do \
		echo "== $$script"; \
		$(PY) $$script || exit $$?; \
	done

clean:
	rm -rf $(VENV) .bench .pytest_cache .mypy_cache .ruff_cache
