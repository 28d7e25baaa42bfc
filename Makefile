# rollwise: one command to install and run, one to install and test.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: install demo serve test lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,mlflow]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rollwise demo

serve: $(STAMP)
	$(VENV)/bin/rollwise example .rollwise-example
	$(VENV)/bin/rollwise serve --config .rollwise-example/rollwise.yaml --insecure-dev

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint
	$(VENV)/bin/pytest -q --durations=15

bench: $(STAMP)
	$(PY) bench/gateway.py

clean:
	rm -rf $(VENV) .rollwise-example .mypy_cache .ruff_cache .pytest_cache
