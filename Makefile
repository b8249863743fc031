# otpgate — make run | test | lint | bench
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test lint unit bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "otpgate needs Python >= 3.11 (set PYTHON=python3.11)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

run: $(STAMP)  ## API + dispatcher + dev inbox on http://127.0.0.1:8080
	$(BIN)/otpgate serve --dev

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy --strict src/otpgate

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

test: lint  ## the whole test suite
	$(BIN)/pytest -q

# make bench ARGS="--runtime redis": the embedded runtime, then Redis, compared
bench: $(STAMP)  ## load the local server and print throughput and latency ratios
	$(BIN)/python -m benchmarks.run $(ARGS)

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
