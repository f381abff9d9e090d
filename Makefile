# Ferry: `make demo` installs everything and runs the live-migration tour; `make test` installs
# everything and runs lint + the whole test suite (SQLite, then the database tests on PostgreSQL
# beside OpenStack's tempest against a real `ferry serve`).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
GUEST   := build/guest
STAMP   := build/.stamps

.PHONY: all deps venv guest demo test lint unit e2e pg-test tempest bench clean

all: test

$(STAMP)/deps: scripts/install-deps.sh
	@mkdir -p $(STAMP)
	bash scripts/install-deps.sh
	@touch $@

deps: $(STAMP)/deps

$(STAMP)/venv: pyproject.toml | $(STAMP)/deps
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

venv: $(STAMP)/venv

guest: $(STAMP)/deps
	bash guest/build.sh $(GUEST)

demo: venv guest
	$(BIN)/python scripts/demo.py --guest-dir $(GUEST)

lint: venv
	$(BIN)/ruff check ferry testkit tests bench scripts
	$(BIN)/mypy ferry
	$(BIN)/lint-imports

unit: venv
	$(BIN)/pytest -q -m "not e2e" tests

e2e: venv guest
	$(BIN)/pytest -q -m e2e tests

pg-test: venv
	bash scripts/pg-test.sh

tempest: venv guest
	bash scripts/tempest.sh

test: lint guest
	$(BIN)/pytest -q --durations=15 -m "not fuzz" tests  # the fuzz suite runs once, on PostgreSQL
	bash scripts/pg-and-tempest.sh

bench: venv guest
	$(BIN)/python bench/run.py --guest-dir $(GUEST)

clean:
	rm -rf build data .pytest_cache .mypy_cache .ruff_cache
