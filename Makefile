# Two commands set up a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo demo-dist test lint unit bench bench-dist chaos clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q -e .
	touch $@

$(DEV_STAMP): $(STAMP) adapters/arq/pyproject.toml
	$(PY) -m pip install -q -e '.[dev]' -e 'adapters/arq[dashboard]'
	touch $@

demo: $(STAMP)
	$(PY) examples/order_processing.py

# The same flow on two arq workers over a private redis-server (or REDIS_URL); stops them all.
demo-dist: $(DEV_STAMP)
	$(PY) examples/demo_dist.py

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check flowcraft adapters tests examples benchmarks
	$(VENV)/bin/mypy --strict flowcraft adapters/arq/flowcraft_arq

unit: $(DEV_STAMP)
	$(VENV)/bin/pytest -q

test: lint unit

bench: $(STAMP)
	$(PY) benchmarks/inmem_chain.py
	$(PY) benchmarks/inmem_fanout.py
	$(PY) benchmarks/inmem_many_runs.py

# Distributed benchmarks: each starts its own redis-server and arq worker processes.
# (Side by side with the TypeScript reference: benchmarks/dist_side_by_side.py, see RESULTS.md.)
bench-dist: $(DEV_STAMP)
	$(PY) benchmarks/dist_diamond.py
	$(PY) benchmarks/arq_raw.py
	$(PY) benchmarks/dist_latency.py
	$(PY) benchmarks/dist_fanout.py
	$(PY) benchmarks/dist_commit_cost.py
	$(PY) benchmarks/dist_profile.py

# The long campaign (not part of `make test`, which runs a 60 s soak): 10,000 fuzz examples
# per property, an 11-minute soak with SIGKILLs, a soak with Redis restarts, the load test.
# Both soaks run every shape (tests/chaos/chaos_flows.py), with fan-outs and batches of 2,000
# (12 and 4 of them) and a second app (key prefix) on one more worker.
chaos: $(DEV_STAMP)
	FLOWCRAFT_FUZZ_EXAMPLES=10000 $(VENV)/bin/pytest -q tests/fuzz tests/test_expressions.py \
		tests/distributed/test_store_parity.py
	$(PY) -m tests.chaos.soak --seconds 660 --runs 5600 --workers 3 --workers2 1 \
		--kill-every-ms 3000 --big 2000 --big-runs 12 --json
	$(PY) -m tests.chaos.soak --seconds 180 --runs 600 --workers 3 --workers2 1 \
		--kill-every-ms 3000 --redis-restart --restart-every-s 20 --big 2000 --big-runs 4 --json
	$(PY) benchmarks/load_diamond.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# Blueprint interchange with the TypeScript Flowcraft 2.10.1 (needs node >= 20 and npm, so it is
# not part of `make test`): regenerates tests/interop/fixtures with the TS builder and runtime,
# runs them here (one row per case), exports our blueprints to tests/interop/exported and runs
# them in the TS runtime (one row per case), then the interop tests. docs/interop.md lists the cases.
.PHONY: interop
interop: $(DEV_STAMP)
	cd tests/interop && npm ci --no-audit --no-fund --loglevel=error
	cd tests/interop && node ts_fixtures.mjs
	$(PY) tests/interop/report_fixtures.py
	$(PY) tests/interop/export_ours.py
	cd tests/interop && node run_exported.mjs
	$(VENV)/bin/pytest -q tests/interop
