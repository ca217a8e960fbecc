# Two commands set up a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test lint bench guard baseline clean

# memdiag (its compiled loops built where there is a C compiler) and its reference engines (a
# distribution of their own, plugins/), both from the checkout
$(STAMP): pyproject.toml setup.py memdiag/measure/python/_heapwalk.c plugins/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,node]' -e './plugins[postgres]'
	touch $(STAMP)

# The Node reference job's dependencies (better-sqlite3, compiled against the installed node's
# headers: no download but from the npm registry); without npm it says so and goes on.
NODE_JOBS  := plugins/node
NODE_STAMP := $(NODE_JOBS)/node_modules/.installed-stamp

$(NODE_STAMP): $(NODE_JOBS)/package.json $(NODE_JOBS)/package-lock.json
	@if command -v npm >/dev/null; then \
		cd $(NODE_JOBS) && npm_config_build_from_source=true \
		npm_config_nodedir=$$(dirname $$(dirname $$(command -v node))) \
		npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed-stamp; \
	else echo "make: npm not found: the Node reference job ($(NODE_JOBS)) is not installed"; fi

install: $(STAMP) $(NODE_STAMP)

# The main job: the reference `import` engine (incident 001) on the embedded SQLite default,
# both variants, two batch sizes, three input sizes (a fit with a quality), decided at the
# production size of 220,000 records; about two to three minutes on 2 cores.
demo: $(STAMP)
	$(BIN)/memdiag sweep import --param variant=accumulate,stream --batch 50,200 \
		--param records=250,500,1000 --repeat 1 --at records=220000 --out reports/demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy memdiag plugins/memdiag_plugins

test: lint $(NODE_STAMP)
	$(BIN)/pytest

# memdiag's own memory gate: the reference engines' fixed variants against reports/baseline.json
guard: $(STAMP)
	bash .ci/guard.sh

# Re-measure and accept the baseline (review the diff of reports/baseline.json, then commit)
baseline: $(STAMP)
	bash .ci/guard.sh --accept

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py --out docs/performance.md

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache memdiag/measure/python/*.so
