# Quick start: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench clean

$(STAMP): pyproject.toml Makefile tools/requirements.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The local CPU wheel; a looser torch requirement would pull GBs of CUDA packages.
	$(PIP) install -q torch==2.13.0
	# dynamic-network-architectures declares timm -> torchvision, which has no CPU
	# wheel here and drags a CUDA torch in; the U-Nets we use need neither.
	$(PIP) install -q --no-deps dynamic-network-architectures==0.4.4
	# The extras' other requirements, then the package with --no-deps: `pip install -e .[pretrain]`
	# would resolve the dependencies of the installed dynamic-network-architectures too (timm).
	$(PY) tools/requirements.py pretrain demo test cluster --without dynamic-network-architectures \
		> $(VENV)/requirements.txt
	$(PIP) install -q -r $(VENV)/requirements.txt
	$(PIP) install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m curate.demo demo_out

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) tools/requirements.py bench > $(VENV)/requirements-bench.txt
	$(PIP) install -q -r $(VENV)/requirements-bench.txt
	$(PY) benchmarks/bench_index.py --subjects 3000

clean:
	rm -rf $(VENV) demo_out .pytest_cache
