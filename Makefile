# `make test` and `make demo` set everything up from nothing in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lint browser demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,app]"
	# crypten 0.4.1 declares torchvision and the defunct `sklearn` package; what it
	# really imports is in pyproject.toml's dependencies, so skip its metadata.
	$(BIN)/pip install --quiet --no-deps crypten==0.4.1
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check explorer tests benchmarks

# Debian's chromium for tests/test_browser.py, which Playwright drives through executable_path
# (never `playwright install`: it downloads a browser build). Needs root, as on CI; quiet when
# chromium is there, and without root the browser test is skipped with the reason.
CHROMIUM := /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || if [ "$$(id -u)" = 0 ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	else \
		echo "$(CHROMIUM) is missing and this is not root: run 'sudo apt-get install chromium'" \
			"or the browser test is skipped"; \
	fi

test: lint browser
	$(BIN)/python -m pytest -q

# The dashboard (notebooks/explorer.ipynb) served by Voila at the server's root on port $(PORT)
# (`make demo PORT=8900`), with the server settings Binder uses too (binder/voila.py: idle kernels
# of closed pages are culled, a memory budget per page); $(WARM) kernels wait with the dashboard
# already rendered, so a page opens in about a second (`make demo WARM=0` for none; each waiting
# kernel holds 400-500 MB). Ctrl-C stops it, kernels included.
PORT ?= 8866
WARM ?= 2
demo: setup
	@echo "Dashboard: http://localhost:$(PORT)"
	EXPLORER_WARM_KERNELS=$(WARM) $(BIN)/voila notebooks/explorer.ipynb --no-browser --port=$(PORT) --Voila.port_retries=0 \
		--Voila.ip=localhost --Voila.config_file_paths=$(CURDIR)/binder

bench: setup
	$(BIN)/python benchmarks/table2_wdbc.py
	$(BIN)/python benchmarks/table1_mnist.py
	$(BIN)/python benchmarks/private_costs.py
	$(BIN)/python benchmarks/newton_steps.py
	$(BIN)/python benchmarks/lam_table.py
	$(BIN)/python benchmarks/fig6_ratios.py
	$(BIN)/python benchmarks/leakage.py
	$(BIN)/python benchmarks/reproduce_paper.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo-results.csv
