# The two commands of the README: `make demo` and `make test`. Both make their own virtualenv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Absolute: the tests start daemons and commands in other directories.
NO_ORJSON = $(abspath $(VENV))/no-orjson

.PHONY: demo test lint typecheck bench docs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

demo: $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	$(BIN)/python examples/counter_client.py

lint: $(BIN)/python
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(BIN)/python
	$(BIN)/mypy
	$(BIN)/mypy --platform win32 jitpc
	$(BIN)/mypy --platform darwin jitpc
	$(BIN)/mypy --config-file typings/mypy-without-plugin.ini typings/check_core.py typings/check_typed.py typings/check_sync.py

test: $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	$(MAKE) lint typecheck
	@# The two installs users get: `pip install jitpc` (the default loop, no orjson: a module
	@# on PYTHONPATH that fails to import hides it, from spawned daemons too) and `jitpc[fast]`.
	mkdir -p $(NO_ORJSON)
	echo 'raise ImportError("orjson is hidden: this run tests jitpc without it")' > $(NO_ORJSON)/orjson.py
	PYTHONPATH=$(NO_ORJSON) $(BIN)/pytest --loop=asyncio
	$(BIN)/pytest --loop=uvloop

bench: $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python bench/echo.py
	$(BIN)/python bench/oneshot.py
	$(BIN)/python bench/load.py
	@if command -v valgrind >/dev/null; then $(BIN)/python bench/instructions.py --quick; \
	else echo "valgrind not found: bench/instructions.py skipped"; fi

docs: $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[docs]'
	$(BIN)/mkdocs serve
