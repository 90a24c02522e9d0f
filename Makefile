# clawstate — the two commands of the quick start are `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run demo test lint typecheck unit slow bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,postgres,redis,server,client,s3]'
	touch $(STAMP)

setup: $(STAMP)

## make run: the HTTP API on the embedded default (./.clawstate/state.db); prints its URL
## and, on the store's first start, an admin token (only its hash is stored)
run: $(STAMP)
	$(BIN)/clawstate serve

## make test: lint, format check, strict types, then every test but the long `slow` runs
test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

unit: $(STAMP)
	$(BIN)/pytest -m "not slow"

## make slow: the long kill, restart, soak and fuzz runs (CI runs them after make test)
slow: $(STAMP)
	$(BIN)/pytest -m slow

## make bench: the performance figures written to docs/benchmarks.md
bench: $(STAMP)
	$(BIN)/python -m bench.run --write docs/benchmarks.md

clean:
	rm -rf $(VENV) .clawstate .pytest_cache .mypy_cache .ruff_cache
