# Fanout developer commands. `make run` serves the app; `make test` lints and runs every test.
# Each target installs what it needs, so both work on a fresh clone.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-requirements
UPLOT_DIR := static/vendor/uplot
UPLOT_FILES := $(UPLOT_DIR)/uPlot.iife.min.js $(UPLOT_DIR)/uPlot.min.css
# Only the packages that exist yet: simulator/ is written alongside dashboard/.
TYPED_PACKAGES := $(wildcard simulator dashboard)

.PHONY: venv assets migrate run lint test bench clean

venv: $(STAMP)

# Reinstall only when a requirements file changed since the last install.
$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check --quiet -r requirements-dev.txt
	@touch $@

assets: $(UPLOT_FILES)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

$(UPLOT_DIR)/%: node_modules/.package-lock.json
	@mkdir -p $(UPLOT_DIR)
	cp node_modules/uplot/dist/$* $@

migrate: venv
	$(BIN)/python manage.py migrate --noinput

run: venv assets migrate
	$(BIN)/daphne -b 127.0.0.1 -p 8000 dashboard.asgi:application

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(TYPED_PACKAGES)

test: venv assets
	$(MAKE) lint
	node --test static/js/tests/
	$(BIN)/pytest

bench: venv
	@test -f bench/engine.py || { echo "bench/engine.py does not exist yet"; exit 1; }
	$(BIN)/python bench/engine.py

clean:
	rm -rf $(VENV) node_modules static/vendor staticfiles test-artifacts \
		.pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
