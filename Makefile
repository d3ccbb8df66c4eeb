# Sluice. `make demo` and `make test` do all set-up on a fresh Debian 12 machine (as root):
# packages, hugepages, a release build; then run.

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
QUICK ?=

.PHONY: all setup deps hugepages build demo test bench fmt lint clean

all: build

deps:
	scripts/install-deps.sh

hugepages:
	scripts/hugepages.sh

setup: deps hugepages

build: deps
	$(CARGO) build --release --workspace

demo: setup build
	scripts/demo.sh 10

test: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --release -- -D warnings
	$(CARGO) test --release --workspace
	# The Criterion micro-benchmarks, each run once: they build and their checks hold.
	$(CARGO) test --release -p dataplane -p qos --bench stages
	bash tests/scripts.sh

bench: setup build
	QUICK=$(QUICK) python3 benches/bench.py
	QUICK=$(QUICK) python3 benches/pktgen.py
	QUICK=$(QUICK) python3 benches/failover.py
	QUICK=$(QUICK) python3 benches/telemetry.py

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets --release -- -D warnings

clean:
	$(CARGO) clean
	rm -rf bench-results
