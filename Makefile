# relayd — common tasks. `make test` is what CI runs (.ci/run).
GO       ?= go
# Package versions grow with every commit on main: 0.1.<commit count>.
VERSION  ?= 0.1.$(shell git rev-list --count HEAD 2>/dev/null || echo 0)
ARCH     ?= $(shell $(GO) env GOARCH)
DIST     ?= dist
LDFLAGS  := -s -w -X main.version=$(VERSION)
BINARIES := relayd relayd-client
NFPM     := $(GO) tool -modfile=tools/nfpm.mod nfpm

.PHONY: all build test bench bench-compare fuzz lint run certs package clean

all: build

build:
	@mkdir -p bin
	for b in $(BINARIES); do CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/$$b ./cmd/$$b || exit 1; done

# The whole test suite: formatting, vet, and every test with the race
# detector. The packaging tests (packaging/) need root, rpm, lintian and
# systemd-container; without them they skip (.ci/run installs them).
test: lint
	$(GO) vet ./...
	cd bench && $(GO) vet ./...   # the comparison tools (a module of their own)
	$(GO) test -race -count=1 -shuffle=on -timeout 8m ./...
	cd bench && $(GO) test -count=1 -shuffle=on ./...

# Forwarding, reader and registry benchmarks.
bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./internal/...

# relayd vs nats-server v2.15.2 vs direct loopback, pinned, one run:
# docs/benchmarks/{results.json,table.md,chart.svg}. About five minutes.
bench-compare:
	bench/compare.sh

# Fuzz the frame reader for a while (FUZZTIME=5m for longer).
FUZZTIME ?= 1m
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzReader -fuzztime=$(FUZZTIME) ./internal/protocol

lint:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt needed"; exit 1; }
	$(GO) mod tidy -diff
	cd bench && $(GO) mod tidy -diff

run:
	$(GO) run ./cmd/relayd

# dist/relayd_<version>_<arch>.deb and dist/relayd-<version>-1.<arch>.rpm.
# nfpm is pinned in tools/nfpm.mod so its dependencies stay out of go.mod.
package: build
	@mkdir -p $(DIST)
	printf 'relayd (%s-1) unstable; urgency=medium\n\n  * Build of commit %s.\n\n -- relayd maintainers <relayd@example.com>  %s\n' \
		'$(VERSION)' "$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
		"$$(git log -1 --format=%cD 2>/dev/null || date -R)" | gzip -9n > bin/changelog.Debian.gz
	VERSION=$(VERSION) ARCH=$(ARCH) $(NFPM) package -f packaging/nfpm.yaml -p deb -t $(DIST)/
	VERSION=$(VERSION) ARCH=$(ARCH) $(NFPM) package -f packaging/nfpm.yaml -p rpm -t $(DIST)/

# testssl.sh's verdict on a TLS listener (needs the testssl.sh package; a few
# minutes; not part of test).
.PHONY: tls-audit
tls-audit:
	packaging/tls-audit.sh

# Throwaway CA, server and client certificates for examples/tls.toml and examples/mtls.toml.
certs:
	$(GO) run ./examples/gencerts -dir examples/certs

clean:
	rm -rf bin dist examples/certs
