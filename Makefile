# relayd — common tasks. `make test` is what CI runs (.ci/run).
GO       ?= go
# Package versions grow with every commit on main: 0.1.<commit count>.
VERSION  ?= 0.1.$(shell git rev-list --count HEAD 2>/dev/null || echo 0)
ARCH     ?= $(shell $(GO) env GOARCH)
DIST     ?= dist
LDFLAGS  := -s -w -X main.version=$(VERSION)
BINARIES := relayd relayd-client
NFPM     := $(GO) tool -modfile=tools/nfpm.mod nfpm
# staticcheck is pinned in tools/staticcheck.mod; it reads the go.mod of
# the directory it runs in, so one pin serves the main module and bench/.
STATICCHECK := $(GO) tool -modfile=$(CURDIR)/tools/staticcheck.mod staticcheck
# Man pages: docs/man/NAME.SECTION.md rendered by go-md2man (tools/md2man.mod),
# dated by the last commit so that one commit always renders the same pages.
MD2MAN   := $(GO) tool -modfile=tools/md2man.mod go-md2man
MANPAGES := relayd.8 relayd.toml.5 relayd-client.1
MANDATE  := $(shell git log -1 --format=%cs 2>/dev/null || date +%F)

.PHONY: all build test bench bench-compare fuzz lint run certs man package clean cluster-demo

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
	$(STATICCHECK) ./...
	cd bench && $(STATICCHECK) ./...

run:
	$(GO) run ./cmd/relayd

# bin/man/*.gz, for the packages. Rendered every time: the pages carry
# $(VERSION). The .nh and .ad l after .TH keep metric names, keys and paths
# whole (no hyphenation, no justification).
man:
	@mkdir -p bin/man
	for p in $(MANPAGES); do \
		sed -e 's/@VERSION@/$(VERSION)/g' -e 's/@DATE@/$(MANDATE)/g' docs/man/$$p.md > bin/man/$$p.md && \
		$(MD2MAN) -in bin/man/$$p.md -out bin/man/$$p.roff && \
		sed -e '/^\.TH /a .nh' -e '/^\.TH /a .ad l' bin/man/$$p.roff | gzip -9n > bin/man/$$p.gz && \
		rm bin/man/$$p.md bin/man/$$p.roff || exit 1; \
	done

# dist/relayd_<version>_<arch>.deb and dist/relayd-<version>-1.<arch>.rpm.
# The Debian changelog is generated from CHANGELOG.md (packaging/changelog).
# nfpm is pinned in tools/nfpm.mod so its dependencies stay out of go.mod.
package: build man
	@mkdir -p $(DIST)
	$(GO) run ./packaging/changelog -version '$(VERSION)' \
		-date "$$(git log -1 --format=%cD 2>/dev/null || date -R)" < CHANGELOG.md > bin/changelog.Debian
	gzip -9nf bin/changelog.Debian
	gzip -9nc CHANGELOG.md > bin/changelog.gz
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

# One nats-server and three relayd nodes of one cluster on loopback, with
# the relayd-client command lines to chat across them (docs/CLUSTER.md).
cluster-demo:
	GO=$(GO) examples/cluster/demo.sh

clean:
	rm -rf bin dist examples/certs
