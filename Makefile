# The README's commands. Each target creates .venv and installs the project if needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck unit bench call setup lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

## make run: relay + console (+ the simulated model when OPENAI_API_KEY is unset)
run: setup
	$(BIN)/python scripts/run.py

## make test: lint, type-check and every test
test: setup lint typecheck unit

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## make call: place a simulated call of SECONDS (default 60) against a relay (default: local);
## MODE=sip places it as a SIP call (OpenAI carrying the audio; simulator mode)
call: setup
	$(BIN)/python scripts/demo_call.py $(or $(URL),http://127.0.0.1:8081) --seconds $(or $(SECONDS),60) --mode $(or $(MODE),twilio)

bench: setup
	$(BIN)/python -m bench $(if $(QUICK),--quick,)

## make lock: refresh constraints.txt from the current environment
lock: setup
	$(BIN)/python -m pip freeze --exclude-editable > constraints.txt

clean:
	rm -rf $(VENV) .web .mypy_cache .ruff_cache .pytest_cache
