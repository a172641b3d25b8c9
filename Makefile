# Linkage — the two commands are `make run` and `make test`; both do all set-up first.
VENV ?= .venv
PY := $(VENV)/bin/python
RUN_ARGS ?=

.PHONY: setup run test unit scenarios images images-test lint typecheck bench bench-ami bench-load bench-soak lab-up lab-down lab-describe clean
BENCH_N ?= 30
BENCH_RATES ?= 1,2,4,8
BENCH_SECONDS ?= 15
BENCH_SOAK_MINUTES ?= 30
BENCH_SOAK_RATE ?= 5
BENCH_AMI_REPEAT ?= 5

setup:            ## Debian packages, Python environment, Asterisk 22 root filesystem (idempotent)
	bash scripts/setup.sh all

run: setup        ## lab up, one demo call through the one-key transfer, then serve until Ctrl-C
	$(PY) -m telephony demo $(RUN_ARGS)

test: setup       ## lint, type check, unit tests, and the SIPp scenarios against the real lab
	bash scripts/test.sh

unit: setup
	$(PY) -m pytest -q tests/unit

scenarios: setup
	$(PY) -m pytest -q tests/lab

images: setup     ## the production images with Podman (scripts/images.sh; cached by a digest of their inputs)
	bash scripts/images.sh build

images-test: images  ## two sites from docker/compose.yaml in containers: a one-key transfer, a controller restart
	$(PY) -m pytest -q -p no:cacheprovider tests/images

lint: setup
	$(VENV)/bin/ruff check telephony linkage_lab tests

typecheck: setup
	$(VENV)/bin/mypy

bench: setup      ## one-key transfer latency vs a pure-dialplan baseline, interleaved; writes bench/results and BENCHMARKS.md
	$(PY) -m linkage_lab.bench.latency --n $(BENCH_N)
	$(PY) -m linkage_lab.bench.ami_ingest --repeat $(BENCH_AMI_REPEAT)
	$(PY) -m linkage_lab.bench.schema
	$(PY) -m linkage_lab.bench.screen_pop --n $(BENCH_N)
	$(PY) -m linkage_lab.bench.returns --n $(BENCH_N)
	$(PY) -m linkage_lab.bench.advice --rounds 5
	$(PY) -m linkage_lab.bench.reporting --repeat 3

bench-ami: setup  ## AMI ingestion from the recorded transcripts, controller vs bare panoramisk (no lab): bench/results/ami-ingest-*.json
	$(PY) -m linkage_lab.bench.ami_ingest --repeat $(BENCH_AMI_REPEAT)

bench-load: setup ## sustained transfers per second, one-key vs baseline: bench/results/load-*.json
	$(PY) -m linkage_lab.bench.load --rates $(BENCH_RATES) --seconds $(BENCH_SECONDS)

bench-soak: setup ## BENCH_SOAK_MINUTES (30) at BENCH_SOAK_RATE (5) transfers/s: memory growth and lost tickets: bench/results/soak-*.json
	$(PY) -m linkage_lab.bench.soak --minutes $(BENCH_SOAK_MINUTES) --rate $(BENCH_SOAK_RATE)

lab-up: setup
	$(PY) -m telephony lab up

lab-down:
	$(PY) -m telephony lab down

lab-describe:
	$(PY) -m telephony lab describe

clean: lab-down
	rm -rf reports .pytest_cache .mypy_cache .ruff_cache
