# Two commands: `make demo` (napari with the plugin and sample data; headless: the CLI pipeline)
# and `make test` (the test suite under Xvfb, then ruff and mypy). Both create .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch, torchvision" 2>/dev/null || \
		$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e ".[test,bioimageio,cluster,formats]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cardioseg demo --out demo_output

test: $(STAMP)
	bash scripts/system_deps.sh
	$(BIN)/python -m pytest -q
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy src/napari_cardioseg

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy src/napari_cardioseg

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[benchmark]"
	$(BIN)/python benchmarks/bench_predict.py
	$(BIN)/python benchmarks/bench_sparse.py

clean:
	rm -rf $(VENV) demo_output build *.egg-info
