# The same targets people and CI run. Everything is installed into .venv from the project's own files,
# so a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PEERS_STAMP := $(VENV)/.installed-peers

.PHONY: demo test lint typecheck unit bench clean setup redis-server tmux soak peers

setup: $(STAMP)

# The set-up's commands (traced by `set -x`) and their output go to stderr, so that a first `make demo | jq`
# gets nothing but the demo's JSON lines on stdout.
$(STAMP): pyproject.toml
	@set -x; $(PYTHON) -m venv $(VENV) >&2
	@set -x; $(BIN)/python -m pip install --quiet --upgrade pip >&2
	@set -x; $(BIN)/python -m pip install --quiet -e '.[dev,bench]' >&2
	@touch $(STAMP)

# Silent (`@`): piped, stdout carries only the events, one JSON line each (docs/events.md).
demo: $(STAMP)
	@$(BIN)/userstream demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/ruff check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

# The Redis sink's tests run against a real redis-server; install it when the machine lacks one.
redis-server:
	bash scripts/ensure-package.sh redis-server redis-server

# The demo's dashboard is tested in a real terminal (tests/test_demo_terminal.py); install tmux when missing.
tmux:
	bash scripts/ensure-package.sh tmux tmux

# The chaos test's fault schedule is seeded: `make test` (and so CI) uses a fixed seed so a run is
# reproducible; `make soak` draws a fresh one each time and prints it. Override: make test CHAOS_SEED=<n>.
CHAOS_SEED ?= 20261121

unit: $(STAMP) redis-server tmux
	USERSTREAM_CHAOS_SEED=$(CHAOS_SEED) $(BIN)/python -m pytest -W error $(PYTEST_ARGS)

test: lint typecheck unit

# The chaos test (tests/chaos/test_chaos.py, docs/reliability.md) for as long as asked, its figures printed:
# make soak SECONDS=600; SEED=<n> replays the fault schedule of a printed seed.
SECONDS ?= 600
soak: $(STAMP)
	USERSTREAM_CHAOS_SECONDS=$(SECONDS) USERSTREAM_CHAOS_SEED=$(SEED) \
		$(BIN)/python -m pytest -W error -s -q tests/chaos/test_chaos.py

# The benchmarks of issue 6, and the gateway into SQLite of issue 14 (about 14 minutes on 2 cores;
# ARGS=--quick for a smoke run; ARGS="--sections gateway" for one section). They write
# bench/results/userstream.json; bench/select_libs.py, the library selection of docs/architecture.md,
# runs on its own. BASELINE_SRC=<another tree>/src measures that tree's gateway beside this one's,
# alternating (docs/performance.md, "The gateway").
BASELINE_SRC ?=
bench: $(STAMP) $(PEERS_STAMP)
	$(BIN)/python bench/run.py $(if $(BASELINE_SRC),--baseline-src $(BASELINE_SRC)) $(ARGS)

# The peers the bench measures beside userstream (ccxt, python-binance: the `peers` extra), installed
# for `make bench` only, so that `make test` never pulls them in.
peers: $(PEERS_STAMP)
$(PEERS_STAMP): $(STAMP) pyproject.toml
	@set -x; $(BIN)/python -m pip install --quiet -e '.[bench,peers]' >&2
	@touch $(PEERS_STAMP)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
