# takeover: `make demo` runs the main job on the built-in simulator, `make test` the tests.
# Both install first if needed: a virtualenv in .venv, reused when it is already there.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo demo-headless test test-fast lint typecheck layering firmware pytest clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[train,dev,ros2]'
	@touch $(STAMP)

DEMO_WS ?= demo-workspace

# The operator's terminal on the built-in simulator, recording into ./demo-workspace.
demo: install
	@test -f $(DEMO_WS)/takeover.toml || $(BIN)/takeover init $(DEMO_WS)
	$(BIN)/takeover run --workspace $(DEMO_WS)

# The same robot headless: the scripted expert docks three times, in real time.
demo-headless: install
	$(BIN)/takeover drive --driver expert --episodes 3 --seed 1

lint: install
	$(BIN)/ruff check takeover tests benchmarks

typecheck: install
	$(BIN)/mypy

# The layering of DESIGN.md over the internal import graph (.importlinter).
layering: install
	$(BIN)/lint-imports

firmware:
	$(MAKE) -C firmware test

# The 25 slowest tests are listed after the run, to keep an eye on the budget (README).
pytest: install
	$(BIN)/pytest -q --durations=25

# The development loop: the checks and every test but those marked slow (fuzzing at full
# budget, process kills, DDP, the import-hygiene subprocesses; README lists what each takes).
test-fast: lint typecheck layering
	$(BIN)/pytest -q -n 2 -m "not slow" --durations=10

# pytest last: its summary is the closing line.
test: lint typecheck layering firmware pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
	$(MAKE) -C firmware clean
