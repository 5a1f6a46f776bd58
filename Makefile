# layerlab — see README.md. Every target that needs system packages depends
# on setup, which installs them idempotently (a fresh machine has none).
GO       ?= go
PACKAGES := e2fsprogs xfsprogs btrfs-progs util-linux mount \
            qemu-system-x86 debootstrap kmod file xz-utils bzip2 cpio zfs-fuse chromium busybox-static \
            vagrant shellcheck libseccomp-dev pkg-config python3-docker \
            docker.io runc rsyslog prometheus iproute2 containerd docker-registry skopeo umoci
# runc is layerlabd's --runtime runc (tested); docker.io (dockerd 20.10) is
# only the peer of `layerlab bench --profile runtime`; no test needs it.
# rsyslog receives the syslog log driver's lines in its end-to-end test,
# started by the test in the daemon's network namespace (setup.sh's
# policy-rc.d keeps its package from starting one on the host).
# prometheus scrapes layerlabd's --metrics-addr in a test (setup.sh keeps
# its service from starting); iproute2 brings lo up in a test's netns.
# containerd (1.6, with ctr) runs `layerlab snapshotter serve` as its proxy
# snapshotters in cmd/layerlab's containerd e2e test.
# docker-registry (distribution 2.8) is the registry layerlabd pushes to
# and pulls from in its registry e2e test (started by the test in the
# daemon's network namespace); skopeo and umoci read what docker save
# writes and make the OCI layout docker load reads back.
TESTFLAGS ?= -count=1 -timeout 40m
# libcontainer filters containers' system calls (Docker's default seccomp
# profile) only when built with this tag, against libseccomp-dev.
export GOFLAGS := -tags=seccomp
# What this host must run (drivers/feature): a test that skips for one of
# these fails instead. setup installs the tools; the kernel has the rest.
# The guest's list is in scripts/vm/test.sh (LAYERLAB_VM_REQUIRE).
HOST_REQUIRE ?= root,ext4,xfs,btrfs,zfs,overlay,overlay2,vfs,chromium,busybox,debian,docker,docker-py,runc,rsyslog,prometheus,containerd,registry,skopeo

.PHONY: all setup build image test host-test fuzz vm-test lint bench clean

all: build

setup:
	@bash scripts/setup.sh $(PACKAGES)
	@$(GO) mod download
	@bash scripts/images/debian-minbase.sh >/dev/null

COMMIT  := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
VERSION := $(shell git describe --tags --always 2>/dev/null || echo dev)

build: setup
	$(GO) build -ldflags "-X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o bin/layerlab ./cmd/layerlab
	$(GO) build -ldflags "-X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o bin/layerlabd ./cmd/layerlabd

# The image of the benchmark Jobs in deploy/kubernetes: a docker-archive
# (docker load, ctr images import) of a static layerlab and the tools its
# drivers run, built without a Docker daemon (scripts/image).
IMAGE ?= layerlab/bench:local
image: setup
	$(GO) run ./scripts/image --tag $(IMAGE) --version $(VERSION) --commit $(COMMIT) --out bin/layerlab-image.tar

# Unit and conformance tests, as root, on loop filesystems they make and
# tear down. scripts/leakcheck.sh fails the run if any mount or loop device
# is left behind; LAYERLAB_REQUIRE=$(HOST_REQUIRE) fails a test that skips
# for a feature this host has.
# With qemu installed (setup installs it) the suites that need a kernel this
# host lacks run in the qemu test guest too.
test: host-test
	@if command -v qemu-system-x86_64 >/dev/null; then $(MAKE) --no-print-directory vm-test; \
	  else echo "make test: qemu not installed, skipping vm-test (devicemapper, xfs quota, cgroup v2)"; fi

host-test: setup lint
	bash scripts/vagrant/vagrant_test.sh
	LAYERLAB_REQUIRE=$(HOST_REQUIRE) bash scripts/leakcheck.sh $(GO) test $(TESTFLAGS) ./...
	bash scripts/leakcheck.sh $(MAKE) --no-print-directory fuzz

# A short fuzz run of each target (scripts/fuzz.sh: a fixed count of
# executions each); the seeds, including drivers/layer/testdata/fuzz,
# already ran above as plain tests. FUZZTIME=1m fuzzes each that long.
fuzz:
	GO=$(GO) bash scripts/fuzz.sh

# devicemapper, overlay2 with xfs project quota and a cgroup v2 check, in a
# qemu guest running Debian's 6.1 kernel (scripts/vm; the guest is built
# once and cached in /var/cache/layerlab/vm).
vm-test: setup
	bash scripts/leakcheck.sh bash scripts/vm/test.sh

# gofmt, go vet, and go.mod/go.sum exactly as `go mod tidy` leaves them
# (-diff prints what tidy would change and fails, touching nothing).
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "not gofmt'ed:"; echo "$$out"; exit 1; fi
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }
	$(GO) vet ./...

# The main job: `layerlab bench` with the quick profile on loop filesystems
# (PROFILE=standard|paper for more); the report lands in results/<timestamp>/,
# linked from results/latest (git-ignored; reports/ is the renderer's source).
bench: build
	bash scripts/bench.sh $(BENCHFLAGS)

clean:
	rm -rf bin
