# taskd developer commands. `make run` and `make test` work on a fresh machine with Python 3.11.
# Every target that needs the virtualenv depends on `venv`, which is re-done only when
# pyproject.toml changes (stamp file .venv/.stamp).

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp

# Generated protobuf code (committed): taskd/api/{__init__,message_pool}.py and
# taskd/api/taskd/**/__init__.py come from these sources.
PROTO_ROOT := taskd/api
PROTOS := $(wildcard $(PROTO_ROOT)/taskd/v1/*.proto) $(wildcard $(PROTO_ROOT)/taskd/internal/v1/*.proto)
PROTOC = PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m grpc_tools.protoc -I $(PROTO_ROOT) \
	--python_betterproto2_opt=client_generation=async,server_generation=async

# `make bench`: the node it starts listens here (not the defaults, so a `make run` node can stay up).
BENCH_HTTP ?= 127.0.0.1:18080
BENCH_GRPC ?= 127.0.0.1:15051
BENCH_ARGS ?=
PEERS_ARGS ?=
ARGS ?=
PYTEST_ARGS ?=

# `make sim`: seeds SEED..SEED+SEEDS-1, STEPS events of faults each (tests/raft/sim).
SEED ?= 1
SEEDS ?= 1
STEPS ?= 3000
VERBOSE ?=
PROFILE ?= default

.PHONY: help venv run test build smoke proto proto-check lint bench bench-failover bench-cluster bench-stores bench-peers sim chaos clean distclean

help:
	@echo "make run          set up .venv and run a node (monitor at http://127.0.0.1:8080)"
	@echo "make test         run the whole test suite (slow tests included)"
	@echo "make lint         ruff check + ruff format --check + mypy + lint-imports + proto-check"
	@echo "make build        one-file binary dist/taskd (PyInstaller, build/taskd.spec)"
	@echo "make smoke        test the built dist/taskd (tests/build)"
	@echo "make proto        regenerate taskd/api from the .proto files; proto-check: is it current?"
	@echo "make bench        start a node in a temp dir, run 'taskd bench' against it, stop it"
	@echo "make sim          deterministic Raft cluster simulation: SEED=n [SEEDS=k] [STEPS=m] [PROFILE=harsh] [VERBOSE=1]"
	@echo "make chaos        a cluster under load and faults, then its account (DURATION= NODES= SEED=)"
	@echo "make bench-failover / bench-cluster   W6 on fresh loopback clusters (BENCH_ARGS=...)"
	@echo "make bench-stores W1b/W2 on PostgreSQL and Redis vs the Raft store (BENCH_ARGS=...)"
	@echo "make bench-peers  Celery, RQ, Dramatiq vs taskd on the local Redis/RabbitMQ (PEERS_ARGS=...)"
	@echo "make clean        remove build outputs and caches (distclean: the venv too)"

venv: $(STAMP)

# Both distributions, editable: taskd-client (sdk/, the SDK) and taskd-scheduler (., the server,
# which requires the former). `taskd` is the distribution's name from before the split: a venv
# made then has it, and it goes. $(WHEELHOUSE) gets the wheels of the SDK's dependencies, at the
# dev venv's versions, so that tests/packaging installs the SDK into a fresh venv offline.
WHEELHOUSE := $(VENV)/wheelhouse
PIP := $(BIN)/python -m pip --disable-pip-version-check
$(STAMP): pyproject.toml sdk/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(PIP) uninstall -q -y taskd 2>/dev/null || true
	$(PIP) install --progress-bar off -q -e ./sdk -e '.[dev]'
	@rm -rf $(WHEELHOUSE); $(PIP) freeze --exclude-editable > $(VENV)/constraints.txt
	$(PIP) wheel --progress-bar off -q -c $(VENV)/constraints.txt -w $(WHEELHOUSE) ./sdk
	@rm -f $(WHEELHOUSE)/taskd_client-*.whl  # the tests build their own, from the current source
	@touch $@

run: venv
	$(BIN)/taskd $(ARGS)

test: venv
	$(BIN)/pytest $(PYTEST_ARGS)

build: venv
	build/build.sh

smoke: venv
	TASKD_SMOKE_REQUIRED=1 $(BIN)/pytest tests/build -v $(PYTEST_ARGS)

proto: venv
	$(PROTOC) --python_betterproto2_out=$(PROTO_ROOT) $(PROTOS)

# Generate into a temp dir and compare with what is committed, file by file.
proto-check: venv
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PROTOC) --python_betterproto2_out="$$tmp" $(PROTOS) || exit 1; \
	status=0; \
	for f in $$(cd "$$tmp" && find . -type f -name '*.py' | sort); do \
		diff -u "$(PROTO_ROOT)/$$f" "$$tmp/$$f" || status=1; \
	done; \
	if [ $$status -ne 0 ]; then echo "proto-check: generated code is stale; run 'make proto'" >&2; \
	else echo "proto-check: generated code is current"; fi; \
	exit $$status

# Runs every check even when an earlier one fails, then fails if any did.
lint: venv
	@status=0; \
	echo "== ruff check"; $(BIN)/ruff check . || status=1; \
	echo "== ruff format --check"; $(BIN)/ruff format --check . || status=1; \
	echo "== mypy"; $(BIN)/mypy || status=1; \
	echo "== mypy (simulation)"; $(BIN)/mypy --strict tests/raft/sim || status=1; \
	echo "== lint-imports"; $(BIN)/lint-imports || status=1; \
	echo "== proto-check"; $(MAKE) --no-print-directory proto-check || status=1; \
	exit $$status

bench: venv
	@tmp=$$(mktemp -d); \
	$(BIN)/taskd --grpc $(BENCH_GRPC) --http $(BENCH_HTTP) --data-dir "$$tmp/data" \
		>"$$tmp/node.log" 2>&1 & node=$$!; \
	trap 'kill -TERM $$node 2>/dev/null; wait $$node 2>/dev/null; rm -rf "$$tmp"' EXIT; \
	for i in $$(seq 300); do \
		kill -0 $$node 2>/dev/null || break; \
		curl -sf -o /dev/null "http://$(BENCH_HTTP)/readyz" && break; sleep 0.1; \
	done; \
	curl -sf -o /dev/null "http://$(BENCH_HTTP)/readyz" \
		|| { echo "bench: node not ready after 30 s" >&2; cat "$$tmp/node.log" >&2; exit 1; }; \
	$(BIN)/taskd bench --server-http "http://$(BENCH_HTTP)" --server-grpc $(BENCH_GRPC) $(BENCH_ARGS)

# W6 (bench/README.md): leader SIGKILL -> first write; W1b/W2 single vs cluster, leader CPU.
bench-failover: venv
	$(BIN)/python -m bench.failover $(BENCH_ARGS)

bench-cluster: venv
	$(BIN)/python -m bench.cluster $(BENCH_ARGS)

# W1b/W2 on each shared store against the embedded Raft store, one run (bench/README.md "Stores").
bench-stores: venv
	$(BIN)/python -m bench.stores $(BENCH_ARGS)

# W1a, W2, W3 on Celery (Redis, RabbitMQ), RQ and Dramatiq, then taskd: one table of ratios
# (bench/README.md "Peers"). The peers get their own venv, .venv-peers, made on first use.
bench-peers: venv
	$(BIN)/python -m bench.peers $(PEERS_ARGS)

# Replays one seed exactly; a failure prints the tail of its trace (VERBOSE=1: all of it).
sim: venv
	$(BIN)/python -m tests.raft.sim --seed $(SEED) --seeds $(SEEDS) --steps $(STEPS) \
		--profile $(PROFILE) $(if $(VERBOSE),--verbose)

# `make chaos DURATION=60 NODES=3 SEED=7`: a real cluster, a load, a seeded nemesis (SEED is
# shared with `make sim`: 1 unless given); exits 1 on any violation of design.md §5 (the
# account and the history land in chaos-runs/<time>-seed<n>/).
DURATION ?= 60
NODES ?= 3
CHAOS_ARGS ?=
chaos: venv
	$(BIN)/python -m chaos --duration $(DURATION) --nodes $(NODES) --seed $(SEED) $(CHAOS_ARGS)

clean:
	rm -rf dist build/work build/lib sdk/build .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info sdk/*.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .venv-peers
