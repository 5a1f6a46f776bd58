#!/usr/bin/env bash
# Runs one job inside the qemu test guest and returns its exit code.
#
# usage: run.sh SHARE JOB [TIMEOUT_SECONDS]
#   SHARE  host directory shared with the guest at /host (9p)
#   JOB    path of an executable inside SHARE, run as /host/JOB
# Exit: the job's own code; 124 when the guest timed out; 125 when the
# guest crashed or never reported (so "job failed" and "guest broke" differ).
# The console streams to stdout and is kept in SHARE/console-<job>.log.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
share=$(cd "$1" && pwd); job=$2; limit=${3:-600}
guest=$(bash "$here/build.sh") || { echo "vm: guest build failed" >&2; exit 125; }
log="$share/console-$(basename "$job").log"

boot() { # accel cpu
  timeout --foreground -k 5 "$limit" qemu-system-x86_64 \
    -accel "$1" -cpu "$2" -m 2048 -smp 2 \
    -kernel "$guest/vmlinux" -initrd "$guest/initrd.cpio" \
    -append "console=ttyS0 panic=-1 quiet loglevel=4 job=$job" \
    -nographic -no-reboot -nic none -monitor none -serial stdio \
    -virtfs "local,path=$share,mount_tag=host,security_model=none" \
    </dev/null 2>&1 | tee "$log"
  return "${PIPESTATUS[0]}"
}

# KVM first; nested KVM on some hosts dies before the guest is up, and
# then the same job runs under TCG.
accel=tcg
if [ -w /dev/kvm ]; then
  boot kvm host >/dev/null; qrc=$?
  if grep -q LAYERLAB-GUEST-UP "$log"; then
    cat "$log"; accel=kvm
  else
    echo "vm: KVM did not bring the guest up (qemu exit $qrc); using TCG" >&2
  fi
fi
if [ "$accel" = tcg ]; then
  boot tcg max; qrc=$?
fi
rc=$(sed -n 's/.*LAYERLAB-JOB-EXIT=\([0-9]*\).*/\1/p' "$log" | tail -1)
if [ -n "$rc" ]; then
  echo "vm: job $job exited $rc ($accel)" >&2
  exit "$rc"
fi
if [ "$qrc" = 124 ]; then
  echo "vm: guest timed out after ${limit}s running $job ($accel); console in $log" >&2
  exit 124
fi
echo "vm: guest crashed or stopped before $job reported (qemu exit $qrc, $accel); console in $log" >&2
exit 125
