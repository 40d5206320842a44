# A new user's two commands (see the README): `make test` and `make demo`.
# Both install what they need into the ACTIVE Python environment (the venv or conda environment
# you are in, else the python3 on PATH; PYTHON=/path/to/python picks another) and skip what is
# already installed, so running them again only checks.
PYTHON ?= python3
PYTEST_ARGS ?= -q
DEMO_ARGS ?=

.PHONY: install test demo lint

install:  ## requirements.txt, then upstream Dassl (scripts/install.sh)
	@PYTHON="$(PYTHON)" bash scripts/install.sh

test: install  ## install, then the whole test suite
	$(PYTHON) -m pytest $(PYTEST_ARGS)

demo: install  ## install, then the demo: the whole pipeline on the CPU, no download
	$(PYTHON) tools/demo.py $(DEMO_ARGS)

lint:  ## what CI checks besides the tests
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
