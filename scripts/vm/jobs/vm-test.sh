#!/bin/sh
# Runs inside the test guest (Debian's 6.1 kernel: device-mapper, xfs
# quota, pure cgroup v2), from the host share. The Go test binaries next to
# it were built on the host by scripts/vm/test.sh, which also wrote the
# features the guest must have to ./require (LAYERLAB_REQUIRE: a test that
# skips for one of them fails).
set -u
cd "$(dirname "$0")" || exit 1
LAYERLAB_REQUIRE=$(cat require 2>/dev/null || echo devicemapper,xfs-quota)
export LAYERLAB_REQUIRE
echo "vm-test: LAYERLAB_REQUIRE=$LAYERLAB_REQUIRE"
passed=0 failed=0
run() { # name command args...
  name=$1; shift
  echo "=== vm-test: $name"
  if "$@"; then
    echo "--- vm-test: $name: ok"; passed=$((passed + 1))
  else
    echo "--- vm-test: $name: FAIL"; failed=$((failed + 1))
  fi
}

# gotest runs a Go test binary with -test.v and fails it when it exited
# non-zero, ran no test, or passed nothing: a binary whose tests all
# skipped proves nothing and is not "ok". What counts is the leaves: a
# test whose subtests all skipped still prints "--- PASS" itself, so a
# PASS counts only for a test that has no subtests; a benchmark counts by
# its result line ("BenchmarkX-N  <iterations> ...").
gotest() { # binary args...
  out=/tmp/vm-test-$(basename "$1").out
  { "$@"; echo "vm-test-exit=$?"; } 2>&1 | tee "$out"
  rc=$(sed -n 's/^vm-test-exit=//p' "$out" | tail -1)
  # shellcheck disable=SC2016 # awk's own $ fields
  set -- "$(basename "$1")" "$(awk '
    /^ *--- (PASS|SKIP|FAIL): / { st[$3] = substr($2, 1, 4); names[++n] = $3 }
    /^Benchmark[^ ]*[ \t]+[0-9]+[ \t]/ { bench++ }
    END {
      for (i = 1; i <= n; i++) {
        name = names[i]
        if (st[name] == "SKIP") { skip++; continue }
        if (st[name] == "FAIL") { fail++; continue }
        leaf = 1
        for (j = 1; j <= n; j++) if (index(names[j], name "/") == 1) { leaf = 0; break }
        pass += leaf
      }
      printf "%d %d %d %d", pass, bench, skip, fail
    }' "$out")"
  # shellcheck disable=SC2086 # split the four counts
  set -- "$1" $2
  echo "vm-test: $1: exit $rc, $2 passed, $3 benchmarks, $4 skipped, $5 failed"
  grep -E '^ *--- SKIP: ' "$out" | sed 's/^ */vm-test: skipped: /'
  if grep -q 'no tests to run' "$out"; then
    echo "vm-test: $1 ran no test (its -test.run pattern matches none)"; return 1
  fi
  if [ "$2" = 0 ] && [ "$3" = 0 ]; then
    echo "vm-test: $1 passed nothing: every test skipped or none ran"; return 1
  fi
  [ "$rc" = 0 ]
}

# cgroup v2: the unified hierarchy with the controllers later runtime work
# needs, and a child cgroup that takes a memory limit.
cgroup_v2() {
  [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] || { echo "not cgroup2"; return 1; }
  echo "controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
  for c in cpu memory io pids; do
    grep -qw "$c" /sys/fs/cgroup/cgroup.controllers || { echo "missing controller $c"; return 1; }
  done
  echo "+memory +pids" > /sys/fs/cgroup/cgroup.subtree_control || return 1
  mkdir /sys/fs/cgroup/layerlab-check || return 1
  echo 64M > /sys/fs/cgroup/layerlab-check/memory.max
  got=$(cat /sys/fs/cgroup/layerlab-check/memory.max)
  rmdir /sys/fs/cgroup/layerlab-check
  [ "$got" = 67108864 ] || { echo "memory.max reads $got"; return 1; }
}

run "cgroup v2" cgroup_v2
# For cmd/layerlabd's devicemapper test: the docker CLI from the share,
# busybox where the test image builder looks for it, and the daemon copied
# into the guest's own memory first: it re-executes itself as each
# container's init, and mapped from the 9p share the init reads its 35 MB
# again, charged to the container's memory cgroup (a --memory 64m
# container crawled under TCG).
cp layerlabd /tmp/layerlabd
export LAYERLAB_LAYERLABD=/tmp/layerlabd LAYERLAB_DOCKER_CLI="$PWD/docker"
[ -e /bin/busybox ] || cp busybox /bin/busybox
for t in bin/*.test; do
  [ -x "$t" ] || continue
  # $t.run: a -test.run pattern, optionally followed by ::BENCH and
  # ::BENCHTIME to run the benchmarks matching BENCH too.
  spec=$(cat "$t.run" 2>/dev/null || echo .)
  set -- -test.v -test.count=1 -test.timeout=20m -test.run "${spec%%::*}"
  case $spec in *::*)
    bench=${spec#*::}
    case $bench in *::*) set -- "$@" -test.benchtime "${bench#*::}"; bench=${bench%%::*};; esac
    set -- "$@" -test.bench "$bench";;
  esac
  run "$(basename "$t" .test)" gotest "$t" "$@"
done
# The guest starts with no loop or dm devices: any left is a test's leak.
loops=$(losetup -a | wc -l) dms=$(dmsetup ls 2>/dev/null | grep -vc 'No devices')
echo "vm-test: losetup: $loops loop devices, dmsetup: $dms"
if [ "$loops" != 0 ] || [ "$dms" != 0 ]; then
  echo "vm-test: the tests left loop or dm devices behind"; losetup -a; dmsetup ls
  failed=$((failed + 1))
fi
echo "vm-test: $passed passed, $failed failed"
[ "$failed" = 0 ]
