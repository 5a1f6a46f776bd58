#!/bin/sh
# Runs inside the test guest (Debian's 6.1 kernel: device-mapper, xfs
# quota, pure cgroup v2), from the host share. The Go test binaries next to
# it were built on the host by scripts/vm/test.sh.
set -u
cd "$(dirname "$0")"
passed=0 failed=0
run() { # name binary args...
  name=$1; shift
  echo "=== vm-test: $name"
  if "$@"; then
    echo "--- vm-test: $name: ok"; passed=$((passed + 1))
  else
    echo "--- vm-test: $name: FAIL"; failed=$((failed + 1))
  fi
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
  run "$(basename "$t" .test)" "$t" "$@"
done
echo "vm-test: losetup: $(losetup -a | wc -l) loop devices, dmsetup: $(dmsetup ls 2>/dev/null | grep -vc 'No devices')"
echo "vm-test: $passed passed, $failed failed"
[ "$failed" = 0 ]
