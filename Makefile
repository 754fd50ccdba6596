# capstan — see README.md. `make run` records a demo take; `make test` runs
# every test (what CI runs); `make check` adds fmt and clippy; `make bench`
# runs the capstan vs jack_capture benchmark (docs/benchmarks.md); `make
# stress` the timeline stress bed (scripts/stress.py).
CARGO ?= cargo

.PHONY: all setup build testbed-release test lint check bench stress run clean

all: build

setup:
	@bash scripts/setup.sh

build: setup
	$(CARGO) build --release -p capstan

# Unit tests run in parallel. Integration tests each start a private jackd;
# one test at a time keeps
# them from contending in JACK2's server registry, and a /dev/shm of their
# own (scripts/private-shm.sh) keeps other JACK servers on the machine out
# of it and out of JACK's metadata database.
#
# One build of every target first: the test bed's binaries and the tests
# with the same features (a `build -p capstan-testbed` alone resolves
# features without the dev-dependencies and rebuilt half the tree).
test: setup
	@bash scripts/jack-clean-stale.sh
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace --lib --bins
	bash scripts/private-shm.sh $(CARGO) test -p capstan --test integration -- --test-threads=1

lint: setup
	python3 scripts/modgraph.py --check docs/architecture.md
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

check: lint test

# The test bed (the JACK test source, verifier and benchmarks) is built
# only for these, never by `make build`.
testbed-release:
	$(CARGO) build --release -p capstan-testbed

bench: build testbed-release
	bash scripts/bench.sh

# The timeline stress bed (its 60 s version runs in the tests): four servers
# at once (jackd2 at periods 128/256/1024, PipeWire with quantum and rate
# changes), capstan, the source and the server stopped at random, 480 s of
# random takes, every frame and every silent run checked by position.
# STRESS_ARGS="--seconds 900 --runs jack2:64,pipewire:1024".
stress: build testbed-release
	python3 scripts/stress.py $(STRESS_ARGS)

run: build testbed-release
	bash scripts/demo.sh

clean:
	$(CARGO) clean
