# crisis — Kriminalomsorgen incident and crisis-management event system.
# `make run` and `make test` work on a fresh clone: they create .venv/ themselves.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv run test lint format bench properties faults fuzz audit clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "crisis needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## run: the whole system on the embedded default (broker, worker, web on :8000, SQLite in ./var)
run: venv
	$(BIN)/crisis up

## lint: ruff, mypy and the import-linter layering contract over the packages (part of `make test`)
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## test: lint, then the whole suite (PostgreSQL too when CRISIS_TEST_DATABASE_URL is set)
test: lint
	$(BIN)/python -m pytest

## bench: throughput and latency benchmarks (not part of `make test`)
bench: venv
	$(BIN)/python -m bench

## properties: the safety-rule property test at full size (200 random runs per database)
properties: venv
	CRISIS_PROPERTY_EXAMPLES=200 $(BIN)/python -m pytest tests/system/test_safety_properties.py

## faults: issue 14's fault scenarios through `crisis up` at full size (also part of `make test`, smaller)
faults: venv
	CRISIS_FAULT_EVENTS=20000 $(BIN)/python -m pytest -m faults tests/system/test_faults.py -s

## fuzz: schemathesis against the running server with a bigger budget than `make test` gives it
fuzz: venv
	CRISIS_FUZZ_EXAMPLES=200 CRISIS_FUZZ_EVENTS_COVERAGE=1 $(BIN)/python -m pytest -m fuzz tests/web/test_api_fuzz.py -s

## audit: pip-audit over .venv's packages; exceptions with reasons in .ci/pip-audit-ignore.txt
audit: venv
	$(BIN)/python .ci/pip_audit.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
