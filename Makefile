# Two commands do all set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1

.PHONY: demo test lint format bench docs venv clean

# The venv is (re)built when pyproject.toml changes; plain pip resolution, no pins forced.
# A download that drops mid-wheel is resumed (--resume-retries); if the install still fails it
# is retried after a growing pause (30 s to 2 min). Wheels a failed try finished are reused only
# where pip's HTTP cache is on and kept; otherwise each try downloads them again.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	for i in 1 2 3 4 5; do \
	    $(BIN)/python -m pip install --resume-retries 20 -e ".[dev]" && break; \
	    test $$i -lt 5 || exit 1; \
	    echo "pip install failed (attempt $$i of 5; a dropped download of a large wheel such as torch's is the usual cause): retrying in $$((30 * i)) s" >&2; \
	    sleep $$((30 * i)); \
	done
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/htd demo

# On every core (pytest-xdist), one test file per worker so its module fixtures are built once;
# `.venv/bin/python -m pytest` alone runs serially.
test: venv lint
	$(BIN)/python -m pytest -n auto --dist loadfile

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The API reference from the docstrings (Sphinx autodoc + napoleon), warnings as errors.
docs: venv
	$(BIN)/python -m sphinx -W --keep-going -b html docs/api build/docs
	@echo "open build/docs/index.html"

bench: venv
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
