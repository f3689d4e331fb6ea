# Two commands set everything up: `make demo` (install + main job) and `make test` (install + checks).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup test lint demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements/constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c requirements/constraints.txt -e '.[server,dev,ray]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

DEMO := src/retouch/demo/examples
demo: $(STAMP)
	$(BIN)/retouch inpaint $(DEMO)/scene1.png --mask $(DEMO)/scene1_mask.png -p "a large red circle" \
		-o outputs/demo --seed 1 --steps 20 --sampler "Euler a" --denoise 1.0 --masked-content fill
	@echo "results in outputs/demo/"

clean:
	rm -rf $(VENV) outputs .pytest_cache .mypy_cache .ruff_cache
