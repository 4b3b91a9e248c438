# mailscore developer commands. `make test` is what CI runs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# Where Debian's chromium and chromium-driver put them; tests/browser looks there.
CHROMIUM := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver

.PHONY: test browser promtool run lint benchmark-verify benchmark-triage benchmark-pipeline \
	benchmark-ingest benchmark-soak clean

# The whole suite runs as two sessions side by side (tests/run_suite.py); PYTEST_ARGS runs one
# plain pytest session with those arguments instead.
test: $(INSTALLED) browser promtool
ifeq ($(strip $(PYTEST_ARGS)),)
	$(BIN)/python -m tests.run_suite
else
	$(BIN)/python -m pytest $(PYTEST_ARGS)
endif

# Chromium and its driver for tests/browser, from Debian, where the packages can be installed.
# Best effort: without them the browser tests skip, and `make test` goes on either way.
browser:
	@-if test -x $(CHROMIUM) && test -x $(CHROMEDRIVER); then :; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "browser tests will skip: chromium/chromedriver missing, and installing them needs root"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "browser tests will skip: chromium/chromedriver missing, and there is no apt-get here"; \
	else \
		echo "installing chromium and chromium-driver for the browser tests"; \
		export DEBIAN_FRONTEND=noninteractive; \
		{ apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; } \
			|| echo "browser tests will skip: installing chromium and chromium-driver failed"; \
	fi

# promtool for tests/deploy (alert rules and dashboard queries), from Debian's prometheus package
# where it can be installed: without recommends (no node exporter), and with the package's own
# Prometheus server stopped where systemd started it. Best effort: without promtool those tests
# skip, and `make test` goes on either way.
promtool:
	@-if command -v promtool >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "promtool tests will skip: promtool missing, and installing it needs root"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "promtool tests will skip: promtool missing, and there is no apt-get here"; \
	else \
		echo "installing promtool (Debian's prometheus package) for the alert rule tests"; \
		export DEBIAN_FRONTEND=noninteractive; \
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus \
			>/dev/null; } || echo "promtool tests will skip: installing prometheus failed"; \
		if [ -d /run/systemd/system ]; then systemctl disable --now prometheus >/dev/null 2>&1; fi; \
	fi

# The whole system on this machine: web, workers, beat, Flower, on the sample mailbox.
run: $(INSTALLED)
	DJANGO_SETTINGS_MODULE=mailscore.settings.local $(BIN)/python manage.py up $(RUN_ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

benchmark-verify: $(INSTALLED)
	$(BIN)/python benchmarks/verify_throughput.py $(BENCH_ARGS)

benchmark-triage: $(INSTALLED)
	$(BIN)/python benchmarks/triage_throughput.py $(BENCH_ARGS)

benchmark-pipeline: $(INSTALLED)
	$(BIN)/python benchmarks/pipeline_end_to_end.py $(BENCH_ARGS)

benchmark-ingest: $(INSTALLED)
	$(BIN)/python benchmarks/ingest_load.py $(BENCH_ARGS)

# 10 minutes at 70% of the measured capacity, then again with a triage pool child killed halfway;
# figures and data into docs/ (soak.png, soak-worker-killed.png and their -series.json).
benchmark-soak: $(INSTALLED)
	$(BIN)/python benchmarks/soak.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/soak.py --kill-worker-at 0.5 $(BENCH_ARGS)

# The virtual environment is rebuilt whenever a requirements file changes.
$(INSTALLED): requirements/base.txt requirements/dev.txt requirements/production.txt
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "mailscore needs Python 3.11, found " + sys.version'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	touch $@

clean:
	rm -rf $(VENV) .devdata
