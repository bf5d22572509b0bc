# relayd — common tasks. `make test` is what CI runs (.ci/run).
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BINARIES := relayd relayd-client

.PHONY: all build test bench fuzz lint run certs clean

all: build

build:
	@mkdir -p bin
	for b in $(BINARIES); do CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/$$b ./cmd/$$b || exit 1; done

# The whole test suite, with the race detector.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 8m ./...

# Forwarding, reader and registry benchmarks.
bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./internal/...

# Fuzz the frame reader for a while (FUZZTIME=5m for longer).
FUZZTIME ?= 1m
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzReader -fuzztime=$(FUZZTIME) ./internal/protocol

lint:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt needed"; exit 1; }
	$(GO) mod tidy -diff

run:
	$(GO) run ./cmd/relayd

# Throwaway CA, server and client certificates for examples/tls.toml and examples/mtls.toml.
certs:
	$(GO) run ./examples/gencerts -dir examples/certs

clean:
	rm -rf bin dist examples/certs
