# Two commands set everything up: `make demo` (install + main job) and `make test` (install + checks).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup test lint demo webui chromium screenshots clean

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

# The browser tests (tests/webui) drive the system Chromium; install it when it is missing.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive \
		$(SUDO) apt-get install -y --no-install-recommends chromium fonts-liberation; }

test: lint chromium
	$(BIN)/pytest -q

DEMO := src/retouch/demo/examples
demo: $(STAMP)
	$(BIN)/retouch inpaint $(DEMO)/scene1.png --mask $(DEMO)/scene1_mask.png -p "a large red circle" \
		-o outputs/demo --seed 1 --steps 20 --sampler "Euler a" --denoise 1.0 --masked-content fill
	@echo "results in outputs/demo/"

# The web page on the demo model: http://127.0.0.1:7861/ (Ctrl-C stops the server).
webui: $(STAMP)
	@echo "opening http://127.0.0.1:7861/ (Ctrl-C stops the server)"
	@( sleep 6; $(BIN)/python -m webbrowser -t http://127.0.0.1:7861/ >/dev/null 2>&1 || true ) &
	$(BIN)/retouch serve --model demo --port 7861

# Screenshots of the page for the README (docs/webui_*.png), taken with the demo model.
screenshots: $(STAMP) chromium
	$(BIN)/python tools/webui/screenshots.py

clean:
	rm -rf $(VENV) outputs .pytest_cache .mypy_cache .ruff_cache
