# Shortcuts for the bench and the tests; each bench target starts the project's RabbitMQ node first.
#   make bench | bench-quick | bench-hubs | soak | soak-quick | profile | test

VENV ?= .venv
PYTHON := $(VENV)/bin/python

.PHONY: bench bench-quick bench-hubs soak soak-quick profile test broker postgres

broker:
	scripts/broker start

postgres:
	scripts/postgres start >/dev/null

bench: broker
	$(PYTHON) -m bench.run

bench-quick: broker
	$(PYTHON) -m bench.run --quick

bench-hubs: broker postgres
	$(PYTHON) -m bench.run --hubs 2 --ledger postgres

soak: broker
	$(PYTHON) -m bench.soak --rate 80 --seconds 600

soak-quick: broker
	$(PYTHON) -m bench.soak --rate 100 --seconds 30

profile: broker
	$(PYTHON) -m bench.profile

test:
	./scripts/test
