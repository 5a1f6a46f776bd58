# layerlab — see README.md. Every target that needs system packages depends
# on setup, which installs them idempotently (a fresh machine has none).
GO       ?= go
PACKAGES := e2fsprogs xfsprogs btrfs-progs util-linux mount
TESTFLAGS ?= -count=1 -timeout 40m

.PHONY: all setup build test lint bench clean

all: build

setup:
	@bash scripts/setup.sh $(PACKAGES)
	@$(GO) mod download

build: setup
	$(GO) build -o bin/layerlab ./cmd/layerlab

# Unit and conformance tests, as root, on loop filesystems they make and
# tear down. scripts/leakcheck.sh fails the run if any mount or loop device
# is left behind.
test: setup lint
	bash scripts/leakcheck.sh $(GO) test $(TESTFLAGS) ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "not gofmt'ed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# The main job. Until the harness (layerlab bench) lands this runs the Go
# benchmarks that exist: overlay2's snapshot cycle next to its floor.
bench: build
	bash scripts/bench.sh

clean:
	rm -rf bin
