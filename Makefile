# `make test` and `make demo` set everything up from nothing in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lint demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	# crypten 0.4.1 declares torchvision and the defunct `sklearn` package; what it
	# really imports is in pyproject.toml's dependencies, so skip its metadata.
	$(BIN)/pip install --quiet --no-deps crypten==0.4.1
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check explorer tests benchmarks

test: lint
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/appraisal-explorer appraise --task wdbc --corruption label-noise --candidates 20 \
		--size 30 --max-level 0.5 --appraisers influence,gradient-norm,finetune --seed 0 \
		--out demo-results.csv

bench: setup
	$(BIN)/python benchmarks/table2_wdbc.py
	$(BIN)/python benchmarks/table1_mnist.py
	$(BIN)/python benchmarks/private_costs.py
	$(BIN)/python benchmarks/reproduce_paper.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo-results.csv
