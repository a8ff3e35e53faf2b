# The two set-up commands (see README): `make demo` and `make test`.
# Both create the virtualenv at .venv/ if it is missing and install braincam into it.

PYTHON ?= python3
VENV ?= .venv
# Pinned here (not in pyproject) to the CPU-capable builds that pip finds offline on the project's
# machines; override on yours, e.g. `make demo TORCH_SPEC="torch torchvision"`.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= demo-out
PYTEST_ARGS ?=
# The suite runs on every core (pytest-xdist), a test file per worker: a file's session fixtures
# and its `last`-marked tally stay in one process. PYTEST_WORKERS=0 runs it in this process.
PYTEST_WORKERS ?= auto

STAMP := $(VENV)/.braincam-installed

.PHONY: venv demo test lint format clean mutation

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -c "import torch, torchvision" 2>/dev/null || \
		$(VENV)/bin/pip install --quiet $(TORCH_SPEC)
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/braincam demo $(DEMO_OUT)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# Mutation testing of the core (docs/testing.md): one module at a time, one worker, niced; not
# part of `make test` or CI (about 1 h on the 2-core machine). MUTATION_MODULES="io data.splits"
# runs some of them; scores in mutation-out/scores.tsv, survivors in mutation-out/<module>/.
MUTATION_MODULES ?=
mutation: $(STAMP)
	$(VENV)/bin/python benchmarks/mutation.py $(MUTATION_MODULES)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/lint-imports  # the import layers of docs/architecture.md ([tool.importlinter])

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache mutation-out
