# rollwise: one command to install and run, one to install and test.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
CHROMIUM := /usr/bin/chromium
PROMETHEUS := /usr/bin/prometheus
# The wheel that pip builds for a user, its request path compiled with mypyc (setup.py),
# unpacked where the tests and the benchmark import it ahead of the source.
COMPILED := $(CURDIR)/build/compiled
COMPILED_STAMP := $(COMPILED)/.built
# The tests of the compiled modules, run once more on their pure Python source: what a
# machine without a C compiler installs.
PURE_TESTS := tests/unit tests/integration/server/test_http11.py tests/integration/backends

.PHONY: install compiled demo serve test lint bench clean grpc-code

$(STAMP): pyproject.toml setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Editable, so pure Python (setup.py): edits take effect without a build.
	$(PY) -m pip install -q -e '.[dev,mlflow,browser]'
	touch $(STAMP)

install: $(STAMP)

# The dashboard's browser tests drive Debian's chromium (Playwright downloads no browser).
# A file target: apt runs only when the binary is missing.
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "make test needs chromium at $@ for the dashboard's browser tests, and apt-get is not here to install it: install chromium by hand" >&2; exit 1; }
	@SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo -n); \
	{ $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends chromium; } \
	  && [ -x $@ ] \
	  || { echo "make test needs chromium at $@ for the dashboard's browser tests and could not install it: run 'apt-get install chromium' as root" >&2; exit 1; }

# The Prometheus gates' tests start Debian's prometheus, scraping a test gateway.
$(PROMETHEUS):
	@command -v apt-get >/dev/null || { echo "make test needs prometheus at $@ for the Prometheus gates' tests, and apt-get is not here to install it: install prometheus by hand" >&2; exit 1; }
	@SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo -n); \
	{ $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends prometheus; } \
	  && [ -x $@ ] \
	  || { echo "make test needs prometheus at $@ for the Prometheus gates' tests and could not install it: run 'apt-get install prometheus' as root" >&2; exit 1; }

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
	$(VENV)/bin/ruff check src tests bench scripts setup.py
	$(VENV)/bin/ruff format --check src tests bench scripts setup.py
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint $(COMPILED_STAMP) $(CHROMIUM) $(PROMETHEUS)
	PYTHONPATH=$(COMPILED) ROLLWISE_EXPECT_COMPILED=1 $(VENV)/bin/pytest -q --durations=15
	ROLLWISE_EXPECT_COMPILED=0 $(VENV)/bin/pytest -q $(PURE_TESTS)

bench: $(COMPILED_STAMP)
	PYTHONPATH=$(COMPILED) $(PY) bench/gateway.py

# The Open Inference Protocol's gRPC code (src/rollwise/grpc_v2), generated from its
# .proto and checked in. The generator is pinned and kept in a venv of its own: its
# protobuf pins must not move the project's, and its version sets the oldest protobuf
# the generated code runs on (grpcio-tools 1.75.1 writes protobuf 6.31.1 code).
GRPC_TOOLS := build/grpc-tools
grpc-code:
	python3 -m venv $(GRPC_TOOLS)
	$(GRPC_TOOLS)/bin/python -m pip install -q 'grpcio-tools==1.75.1'
	$(GRPC_TOOLS)/bin/python scripts/generate_grpc_v2.py

clean:
	rm -rf $(VENV) build .rollwise-example .mypy_cache .ruff_cache .pytest_cache
