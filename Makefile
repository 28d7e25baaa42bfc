# rollwise: one command to install and run, one to install and test.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
# The wheel that pip builds for a user, its request path compiled with mypyc (setup.py),
# unpacked where the tests and the benchmark import it ahead of the source.
COMPILED := $(CURDIR)/build/compiled
COMPILED_STAMP := $(COMPILED)/.built
# The tests of the compiled modules, run once more on their pure Python source: what a
# machine without a C compiler installs.
PURE_TESTS := tests/unit tests/integration/server/test_http11.py tests/integration/backends

.PHONY: install compiled demo serve test lint bench clean

$(STAMP): pyproject.toml setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Editable, so pure Python (setup.py): edits take effect without a build.
	$(PY) -m pip install -q -e '.[dev,mlflow]'
	touch $(STAMP)

install: $(STAMP)

$(COMPILED_STAMP): $(STAMP) setup.py $(shell find src -name '*.py')
	rm -rf build/wheel $(COMPILED)
	$(PY) -m pip wheel -q --no-deps -w build/wheel .
	$(PY) -m zipfile -e build/wheel/rollwise-*.whl $(COMPILED)
	touch $@

compiled: $(COMPILED_STAMP)

demo: $(STAMP)
	$(VENV)/bin/rollwise demo

serve: $(STAMP)
	$(VENV)/bin/rollwise example .rollwise-example
	$(VENV)/bin/rollwise serve --config .rollwise-example/rollwise.yaml --insecure-dev

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench setup.py
	$(VENV)/bin/ruff format --check src tests bench setup.py
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint $(COMPILED_STAMP)
	PYTHONPATH=$(COMPILED) ROLLWISE_EXPECT_COMPILED=1 $(VENV)/bin/pytest -q --durations=15
	ROLLWISE_EXPECT_COMPILED=0 $(VENV)/bin/pytest -q $(PURE_TESTS)

bench: $(COMPILED_STAMP)
	PYTHONPATH=$(COMPILED) $(PY) bench/gateway.py

clean:
	rm -rf $(VENV) build .rollwise-example .mypy_cache .ruff_cache .pytest_cache
