# Set-up and test entry points. `make demo` and `make test` are the whole set-up on a fresh machine.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-quick install test test-all bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch goes first, pinned: an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bitscale demo

demo-quick: $(STAMP)
	$(VENV)/bin/bitscale demo --quick

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m ""

bench: $(STAMP)
	$(PY) benchmarks/qat_overhead.py
	$(PY) benchmarks/conv_qat.py
	$(PY) benchmarks/sweep_throughput.py
	$(PY) benchmarks/bootstrap_fit.py
	$(PY) benchmarks/catch_up_fit.py
	$(PY) benchmarks/packed_kernels.py
	$(PY) benchmarks/lm_throughput.py
	$(PY) benchmarks/module_overhead.py
	$(PY) benchmarks/amx_gemm.py
	$(PY) benchmarks/decode.py --shape small

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
