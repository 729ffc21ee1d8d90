# qbo-sync: every target sets up what is missing first, so each is one command on a fresh machine.
.PHONY: setup test test-fast test-unit lint bench demo demo-stop db db-stop db-status install simulator clean

VENV := .venv
QBO := $(VENV)/bin/qbo-sync

setup:
	@./scripts/setup.sh

test: setup
	$(VENV)/bin/pytest -q

# unit, simulator and database tests, without those marked slow (own clusters, pg_cron waits)
test-fast: setup
	$(VENV)/bin/pytest -q -m "not slow" tests/unit tests/simulator tests/db

test-unit: setup
	$(VENV)/bin/pytest -q tests/unit

lint: setup
	$(VENV)/bin/ruff check $(wildcard qbo_sync plpython simulator listener tests bench)

bench: setup
	$(VENV)/bin/python -m bench

# the database, the simulator and the listener, a real two-way sync, left running
demo: setup
	$(QBO) demo

demo-stop: setup
	$(QBO) demo --stop

db: setup
	$(QBO) db start

db-stop: setup
	$(QBO) db stop

db-status: setup
	$(QBO) db status

install: db
	$(QBO) install

simulator: setup
	$(QBO) simulator --port 8765

clean:
	-$(QBO) db stop
	rm -rf .local bench/results
