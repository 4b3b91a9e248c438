# mailscore developer commands. `make test` is what CI runs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: test lint benchmark-verify benchmark-triage clean

test: $(INSTALLED)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

benchmark-verify: $(INSTALLED)
	$(BIN)/python benchmarks/verify_throughput.py $(BENCH_ARGS)

benchmark-triage: $(INSTALLED)
	$(BIN)/python benchmarks/triage_throughput.py $(BENCH_ARGS)

# The virtual environment is rebuilt whenever a requirements file changes.
$(INSTALLED): requirements/base.txt requirements/dev.txt requirements/production.txt
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "mailscore needs Python 3.11, found " + sys.version'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	touch $@

clean:
	rm -rf $(VENV) .devdata
