# Slipway — `make help` lists the targets.

SHELL := /bin/bash
BIN := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)
export GOFLAGS ?= -buildvcs=false

# Pinned tools (the module proxy here refuses some @latest lookups: always pin).
MINIO_VERSION       ?= v0.0.0-20260212201848-7aac2a2c5b7c
NATSCLI_VERSION     ?= v0.5.1
STATICCHECK_VERSION ?= v0.8.2
GGCR_VERSION        ?= v0.22.1
COMPOSE_VERSION     ?= v5.6.0
# The nats-server the compose test runs as its NATS image: the version the CLI embeds.
NATS_SERVER_VERSION ?= $(shell awk '$$1 == "github.com/nats-io/nats-server/v2" { print $$2 }' tools/slipway/go.mod)

# Debian packages the tests and the demo use.
APT_PACKAGES := qemu-utils qemu-system-x86 e2fsprogs xfsprogs cryptsetup-bin busybox-static \
	docker-registry skopeo zstd xz-utils bzip2 gzip util-linux genisoimage s3cmd jq curl time ca-certificates \
	docker.io debootstrap \
	chromium nodejs npm

# Every Go module of the workspace (go.work), as ./dir/... patterns.
MODULES = $(shell go list -m -f '{{.Dir}}/...' | sed 's|^$(CURDIR)|.|')

GO_TEST_FLAGS ?= -count=1 -timeout 45m

# The packages with the most concurrency run a second time under the race
# detector in `make test`.
RACE_PKGS := ./pkg/bus/... ./pkg/saga/... ./services/catalog/... ./services/launcher/...

# Every fuzz target, as package:Function; `make fuzz` (and `make test`) runs
# each for FUZZ_TIME.
FUZZ_TIME    ?= 20s
FUZZ_TARGETS := ./services/builder/fsimage:FuzzBuilderScripts ./services/builder/flatten:FuzzFlatten \
	./services/builder/ext4:FuzzLayout \
	./pkg/qcow2:FuzzImage \
	./pkg/inspect:FuzzInspect ./pkg/dockerurl:FuzzParse ./pkg/onetemplate:FuzzParse
BENCH_FLAGS   ?= -run '^$$' -bench . -benchtime 1x -timeout 60m

# Tests and the demo never reach out to the public marketplaces (Docker Hub,
# Linux Containers, TurnKey, OpenNebula's); `make up` lists them when the
# machine can (SLIPWAY_MARKET_MONITORING=off turns that off too).
test demo bench: export SLIPWAY_MARKET_MONITORING = off

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  \033[1m%-10s\033[0m %s\n", $$1, $$2}'

.PHONY: deps
deps: ## Install the Debian packages (as root), or print the apt-get line to run
	@provided=$$(dpkg-query -W -f='$${db:Status-Abbrev} $${Provides}\n' 2>/dev/null | awk '$$1 == "ii" { $$1 = ""; print }' | tr ',' '\n' | awk '{ print $$1 }'); \
	missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || grep -qx "$$p" <<<"$$provided" || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present"; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "deps: installing $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "deps: run as root: apt-get install -y $$missing"; exit 1; fi

.PHONY: tools
tools: $(BIN)/minio $(BIN)/nats $(BIN)/crane $(BIN)/nats-server $(BIN)/docker-compose kernel ## Install pinned MinIO, nats-server, docker compose, the nats and crane CLIs and a Debian kernel into ./bin (reused when present)

$(BIN)/minio:
	@echo "tools: building MinIO $(MINIO_VERSION) into ./bin (several minutes the first time)"
	GOBIN=$(BIN) GOFLAGS= go install github.com/minio/minio@$(MINIO_VERSION)

$(BIN)/nats:
	GOBIN=$(BIN) GOFLAGS= go install github.com/nats-io/natscli/nats@$(NATSCLI_VERSION)

.PHONY: kernel
kernel: ## Fetch Debian's kernel (bzImage) into ./bin/kernel for QEMU boots
	./tools/fetch-kernel.sh $(BIN)/kernel

$(BIN)/nats-server:
	GOBIN=$(BIN) GOFLAGS= CGO_ENABLED=0 go install github.com/nats-io/nats-server/v2@$(NATS_SERVER_VERSION)

# docker compose, as the docker CLI plugin ./bin/docker-compose. `go install
# …@version` refuses it (its go.mod has exclude directives), so it is built
# inside its own module, from the module cache.
$(BIN)/docker-compose:
	@echo "tools: building docker compose $(COMPOSE_VERSION) into ./bin"
	dir=$$(GOFLAGS= go mod download -json github.com/docker/compose/v5@$(COMPOSE_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p'); \
	test -n "$$dir" && cd "$$dir" && GOFLAGS=-buildvcs=false CGO_ENABLED=0 go build -trimpath \
		-ldflags '-s -w -X github.com/docker/compose/v5/internal.Version=$(COMPOSE_VERSION)' -o $(BIN)/docker-compose ./cmd

$(BIN)/crane:
	GOBIN=$(BIN) GOFLAGS= go install github.com/google/go-containerregistry/cmd/crane@$(GGCR_VERSION)

$(BIN)/staticcheck:
	GOBIN=$(BIN) GOFLAGS= go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

.PHONY: build
build: ## Build slipway, every service and the static guest init into ./bin
	go build -o $(BIN)/slipway ./tools/slipway
	go build -o $(BIN)/catalog ./services/catalog/cmd/catalog
	go build -o $(BIN)/converter ./services/converter/cmd/converter
	go build -o $(BIN)/builder ./services/builder/cmd/builder
	go build -o $(BIN)/market-dockerhub ./services/market-dockerhub/cmd/market-dockerhub
	go build -o $(BIN)/market-lxc ./services/market-lxc/cmd/market-lxc
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o $(BIN)/slipway-init ./services/builder/cmd/slipway-init
	go build -o $(BIN)/kernel-registry ./services/kernel-registry/cmd/kernel-registry
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o $(BIN)/slipway-initrd ./services/kernel-registry/cmd/slipway-initrd
	go build -o $(BIN)/crypto-luks ./services/crypto-luks/cmd/crypto-luks
	go build -o $(BIN)/launcher ./services/launcher/cmd/launcher

.PHONY: up
up: deps tools build ## Run the whole stack in one process (embedded NATS, local MinIO)
	$(BIN)/slipway up

.PHONY: demo
demo: deps tools build ## Start the stack, import a disk and a container image, encrypt it, boot it as a VM, stop
	./tools/demo.sh

.PHONY: test
test: deps tools console-check ## Run every test against real NATS, MinIO, qemu-img and mkfs
	go vet $(MODULES)
	go test $(GO_TEST_FLAGS) $(MODULES)
	go test -race $(GO_TEST_FLAGS) $(RACE_PKGS)
	$(MAKE) --no-print-directory fuzz

# The web console (tools/slipway/console): its npm packages pinned by
# package-lock.json, bundled by esbuild into dist/app.js, which is
# committed so that `go build` needs no Node; console-check fails when it
# differs from what the sources build to.
CONSOLE_WEB := tools/slipway/console/web
CONSOLE_BUNDLE = (cd $(CONSOLE_WEB) && ./node_modules/.bin/esbuild src/main.js --bundle --format=esm \
	--target=es2020 --minify --legal-comments=none --log-level=warning --outfile=$(1))

$(CONSOLE_WEB)/node_modules/.package-lock.json: $(CONSOLE_WEB)/package-lock.json
	cd $(CONSOLE_WEB) && npm ci --ignore-scripts --no-audit --no-fund

.PHONY: console console-check screenshots
console: $(CONSOLE_WEB)/node_modules/.package-lock.json ## Rebuild the web console's bundle (tools/slipway/console/dist/app.js)
	$(call CONSOLE_BUNDLE,../dist/app.js)

console-check: deps $(CONSOLE_WEB)/node_modules/.package-lock.json ## Run the console's unit tests (node --test) and check dist/ is built from the sources
	cd $(CONSOLE_WEB) && node --test test/
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(call CONSOLE_BUNDLE,$$tmp/app.js) && \
	if ! cmp -s $$tmp/app.js tools/slipway/console/dist/app.js; then \
		echo "console-check: tools/slipway/console/dist/app.js is not what web/src builds to: run make console and commit it"; exit 1; fi; \
	echo "console-check: dist/app.js is up to date"

screenshots: deps ## Run the console's browser test and copy its screenshots into docs/console/
	SLIPWAY_CONSOLE_SHOTS=$(CURDIR)/docs/console go test -count=1 -run 'TestConsoleInBrowser|TestConsoleViewsInBrowser|TestConsoleUpload' ./tools/slipway/cli/

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZ_TIME (20s) each; seed corpora live in testdata/fuzz
	@./tools/fuzz.sh $(FUZZ_TIME) $(FUZZ_TARGETS)

.PHONY: bench
bench: deps tools ## Run the benchmarks; each prints its baseline and the ratio
	go test $(BENCH_FLAGS) ./pkg/bus/ ./pkg/blob/
	go test -run '^$$' -bench 'PermissionCheck|CommitVerify' -benchtime 1x -timeout 10m ./services/catalog/
	go test -run '^$$' -bench ImageClone -benchtime 1x -timeout 30m ./services/catalog/
	go test -run '^$$' -bench . -benchtime 8x -timeout 30m ./pkg/qemuimg/
	go test -run '^$$' -bench LUKSEncrypt -benchtime 2x -timeout 30m ./services/crypto-luks/
	go test -run '^$$' -bench DockerToQcow2 -benchtime 1x -timeout 30m ./integration/
	go test -run '^$$' -bench RootfsToQcow2 -benchtime 2x -timeout 30m ./integration/
	go test -run '^$$' -bench FlattenGzip -benchtime 10x -timeout 10m ./services/builder/flatten/
	go test -run '^$$' -bench Ext4Large -benchtime 3x -timeout 10m ./services/builder/fsimage/

.PHONY: lint
lint: $(BIN)/staticcheck ## gofmt, go vet and staticcheck across the workspace
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet $(MODULES)
	$(BIN)/staticcheck $(MODULES)

.PHONY: generate gen
generate: ## Regenerate from the JSON Schemas: their x-slipway metadata, schemas/types_gen.go, schemas/asyncapi.yaml, the services' README subject tables
	cd schemas && go run ./internal/gen -fix
gen: generate

.PHONY: clean
clean: ## Remove build output and the demo's data
	rm -rf .data $(BIN)/slipway $(BIN)/catalog $(BIN)/converter $(BIN)/builder $(BIN)/market-dockerhub $(BIN)/market-lxc $(BIN)/slipway-init $(BIN)/kernel-registry $(BIN)/slipway-initrd $(BIN)/crypto-luks $(BIN)/launcher
