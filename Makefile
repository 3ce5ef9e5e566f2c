# preview-slots: `make demo` runs the main job on the embedded local stack, `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STATE  ?= .preview-slots
export PREVIEW_SLOTS_CONFIG ?= $(CURDIR)/$(STATE)/preview-slots.toml

.PHONY: install lint test test-fast demo down reliability bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[local,dev]'
	touch $@

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q tests

demo: install
	$(BIN)/preview-slots local up --state-dir $(STATE)
	$(BIN)/preview-slots init
	@$(BIN)/preview-slots release --run-id demo >/dev/null  # a re-run resets again (from the warm spare)
	$(BIN)/preview-slots allocate --run-id demo --strategy seed --seed-version v1 --wait 2m
	@echo
	$(BIN)/preview-slots history --limit 1
	@echo
	$(BIN)/preview-slots status
	@echo
	$(BIN)/preview-slots health --wait 30s
	@echo
	@echo "use the CLI on this stack: export PREVIEW_SLOTS_CONFIG=$(PREVIEW_SLOTS_CONFIG)"
	@echo "psql on a slot: $(BIN)/preview-slots local psql --slot preview1    stop everything: make down"

down: install
	$(BIN)/preview-slots local down --state-dir $(STATE)

reliability: install
	PREVIEW_SLOTS_RELIABILITY=full $(BIN)/pytest -q -s tests/reliability

bench: install
	$(BIN)/python bench/run.py

clean:
	-$(BIN)/preview-slots local down --state-dir $(STATE)
	rm -rf $(VENV) $(STATE) .mypy_cache .ruff_cache .pytest_cache
