#!/usr/bin/env bash
# `make vm-test`: builds the Go test binaries of the suites that need the
# guest's kernel, shares them with the qemu test guest and runs
# jobs/vm-test.sh there. Exit as scripts/vm/run.sh: the job's code, 124
# for a guest time-out, 125 for a guest that crashed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
share=$(mktemp -d "${TMPDIR:-/tmp}/layerlab-vm-share.XXXXXX")
trap 'rm -rf "$share"' EXIT
mkdir -p "$share/bin"
# package and the tests of it that need the guest (a -test.run pattern)
suites=(
  "./quota XFS"
  "./drivers/overlay XFSQuota"
  "./drivers/devicemapper .::Benchmark::20x"
)
for s in "${suites[@]}"; do
  pkg=${s% *}; pattern=${s#* }
  name=$(echo "${pkg#./}" | tr / -)
  CGO_ENABLED=0 go test -c -o "$share/bin/$name.test" "$pkg"
  echo "$pattern" > "$share/bin/$name.test.run"
done
# layerlabd on devicemapper, driven by the docker CLI: libcontainer needs
# cgo (nsenter) and libseccomp, and the guest has neither a Go toolchain
# nor the host's libraries, so the daemon and the test binary are static;
# the CLI (static already) and busybox (for the test image) go along.
static=(-tags 'seccomp,osusergo,netgo' -ldflags '-linkmode external -extldflags -static')
CGO_ENABLED=1 go build "${static[@]}" -o "$share/layerlabd" ./cmd/layerlabd
CGO_ENABLED=1 go test -c "${static[@]}" -o "$share/bin/cmd-layerlabd.test" ./cmd/layerlabd
echo '^TestEndToEndDevicemapper$' > "$share/bin/cmd-layerlabd.test.run"
cp /usr/local/bin/docker "$share/docker"
cp /bin/busybox "$share/busybox"
# What the guest's kernel must run: a test that skips for one of these
# fails instead (drivers/feature; cgroup v2 is the job's own shell check).
echo "${LAYERLAB_VM_REQUIRE:-root,ext4,xfs,xfs-quota,overlay,overlay2,devicemapper}" > "$share/require"
cp "$here/jobs/vm-test.sh" "$share/vm-test.sh"
# Under TCG the devicemapper conformance suite alone takes ~9 minutes on a
# loaded 2-core host (measured 2026-12: 537 s), so the guest gets 30.
rc=0
bash "$here/run.sh" "$share" vm-test.sh "${LAYERLAB_VM_TIMEOUT:-1800}" || rc=$?
mkdir -p bin && cp "$share/console-vm-test.sh.log" bin/vm-test-console.log 2>/dev/null &&
  echo "vm-test: guest console kept in bin/vm-test-console.log" >&2
# The guest's tally, last, as the line CI reads.
grep -ao 'vm-test: [0-9]* passed, [0-9]* failed' bin/vm-test-console.log 2>/dev/null | tail -1
exit $rc
