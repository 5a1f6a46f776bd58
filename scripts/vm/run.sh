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

qemu_args() { # accel cpu
  echo -accel "$1" -cpu "$2" -m 2048 -smp 2 \
    -kernel "$guest/vmlinux" -initrd "$guest/initrd.cpio" \
    -append "'console=ttyS0 panic=-1 quiet loglevel=4 job=$job'" \
    -nographic -no-reboot -nic none -monitor none -serial stdio \
    -virtfs "local,path=$share,mount_tag=host,security_model=none"
}

boot() { # accel cpu
  eval "timeout --foreground -k 5 $limit qemu-system-x86_64 $(qemu_args "$1" "$2")" </dev/null 2>&1 | tee "$log"
  return "${PIPESTATUS[0]}"
}

# kvm_up tries KVM: nested KVM on some hosts dies or hangs before the guest
# is up, so the guest gets up_limit seconds to say it is up; if it does not,
# qemu is stopped and the job runs under TCG instead.
kvm_up() {
  local up_limit=30 pid i
  : >"$log"
  # In a session of its own, with timeout as the session leader ($! is
  # timeout itself, not a subshell): giving up kills the whole group. A
  # plain background eval left timeout and a hung qemu orphaned for the
  # full time limit after every run that fell back to TCG.
  setsid bash -c "exec timeout -k 5 $limit qemu-system-x86_64 $(qemu_args kvm host)" </dev/null >"$log" 2>&1 &
  pid=$!
  for ((i = 0; i < up_limit * 2; i++)); do
    grep -q LAYERLAB-GUEST-UP "$log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if ! grep -q LAYERLAB-GUEST-UP "$log"; then
    kill -TERM -- "-$pid" 2>/dev/null
    for ((i = 0; i < 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL -- "-$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 1
  fi
  tail -n +1 -f --pid="$pid" "$log" &
  wait "$pid"; qrc=$?
  sleep 0.2
  return 0
}

accel=tcg qrc=0
if [ -w /dev/kvm ]; then
  if kvm_up; then
    accel=kvm
  else
    echo "vm: KVM did not bring the guest up within 30 s; using TCG" >&2
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
