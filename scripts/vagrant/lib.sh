# shellcheck shell=bash
# Sourced by the Vagrant provisioners (scripts/vagrant/*.sh), which run as
# root inside a guest made from the Vagrantfile. Never run them on a host:
# they format the guest's blank extra disk.
#
# A VM's provisioner prepares its disk, then calls run_suite, which builds
# layerlab, probes the driver on the disk, runs the driver's tests and a
# benchmark, and writes everything to $REPORT (results/vagrant-<vm>/ in the
# synced project folder; the Vagrantfile copies it back to the host). Each
# step is recorded PASS, FAIL or SKIP in $REPORT/summary.txt; the
# provisioner exits non-zero when any step failed.

# shellcheck disable=SC2034 # LABEL, BENCH_OPTS, APT_UPDATED: the sourcing scripts use them
LAYERLAB_VM=${LAYERLAB_VM:?LAYERLAB_VM must name the Vagrant machine (the Vagrantfile sets it)}
LAYERLAB_SRC=${LAYERLAB_SRC:-/layerlab}
LAYERLAB_DISK_SERIAL=${LAYERLAB_DISK_SERIAL:-layerlab}
MNT=/var/lib/layerlab # layerlab's default data root: each driver's home is MNT/DRIVER
LABEL=layerlab        # filesystem label, LVM volume group, zfs pool
REPORT=$LAYERLAB_SRC/results/vagrant-$LAYERLAB_VM
COMMON_LOG=/var/log/layerlab-vagrant-common.log
# What `make setup` installs here: the mkfs tools of the loop filesystems
# the tests make. The Makefile's own list also holds the qemu test guest's
# tools (no use in a VM, and large) and zfs-fuse, whose zfs and zpool
# commands conflict with OpenZFS's zfsutils-linux in the zfs VM; so every
# make call passes this list instead.
SETUP_PACKAGES="e2fsprogs xfsprogs btrfs-progs util-linux mount"

export DEBIAN_FRONTEND=noninteractive
export HOME=/root GOPATH=/root/go GOCACHE=/root/.cache/go-build
export PATH=/usr/local/go/bin:$PATH
export GOTOOLCHAIN=local # the Go common.sh installed; never a silent download

log() { echo "layerlab[$LAYERLAB_VM]: $*"; }
die() {
  log "error: $*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (Vagrant's shell provisioner does)"

# apt_install PKG...: installs the missing ones only, so a re-provision is
# cheap. The lock timeout waits out the boxes' unattended-upgrades, which
# often holds dpkg for minutes after the first boot.
APT_UPDATED=
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  apt_update
  log "installing ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends "${missing[@]}"
}
apt_update() {
  [ -n "$APT_UPDATED" ] && return 0
  apt-get -o DPkg::Lock::Timeout=900 update -q
  APT_UPDATED=1
}

# find_disk prints the extra disk: the one with the serial the libvirt
# provider gave it, else (VirtualBox sets no serial) the one whole disk
# that is blank - no partition table, filesystem, LVM or zfs label - and
# at least 4 GiB (Ubuntu's VirtualBox box carries a small cloud-init
# disk). It refuses to guess between several. Callers look for their own
# label first, so a prepared disk is never formatted again.
find_disk() {
  local by_serial=/dev/disk/by-id/virtio-$LAYERLAB_DISK_SERIAL name size type rc
  if [ -e "$by_serial" ]; then
    readlink -f "$by_serial"
    return 0
  fi
  local found=()
  while read -r name size type; do
    [ "$type" = disk ] || continue
    case $name in /dev/zram* | /dev/nbd* | /dev/ram* | /dev/loop*) continue ;; esac
    [ "$size" -ge $((4 << 30)) ] || continue
    [ "$(lsblk -nro NAME "$name" | wc -l)" -eq 1 ] || continue # partitions or holders
    rc=0
    blkid -p "$name" >/dev/null 2>&1 || rc=$?
    [ "$rc" -eq 2 ] || continue # 2: no signature at all; anything else is someone's
    found+=("$name")
  done < <(lsblk -dbnpo NAME,SIZE,TYPE)
  case ${#found[@]} in
    1) echo "${found[0]}" ;;
    0) die "no blank extra disk of 4 GiB or more; disks: $(lsblk -dnpo NAME,SIZE,FSTYPE | tr -s ' ' | paste -sd';'). Was this VM made by this project's Vagrantfile?" ;;
    *) die "several blank disks (${found[*]}); refusing to guess which one to format" ;;
  esac
}

# stable_path DEV prints a /dev/disk/by-id name of DEV when there is one
# (zpool records the path it was given).
stable_path() {
  local l
  for l in /dev/disk/by-id/*; do
    [ -e "$l" ] || continue
    case $l in *-part[0-9]*) continue ;; esac
    if [ "$(readlink -f "$l")" = "$1" ]; then
      echo "$l"
      return 0
    fi
  done
  echo "$1"
}

# ensure_mount SPEC FSTYPE OPTIONS: one fstab line for MNT (replaced, so a
# changed option takes), mounted. nofail: a missing disk must not keep the
# VM from booting.
ensure_mount() {
  mkdir -p "$MNT"
  local line="$1 $MNT $2 $3 0 0"
  if ! grep -qxF "$line" /etc/fstab; then
    awk -v m="$MNT" '$2 != m' /etc/fstab >/etc/fstab.layerlab && mv /etc/fstab.layerlab /etc/fstab
    echo "$line" >>/etc/fstab
    if command -v systemctl >/dev/null; then systemctl daemon-reload; fi
  fi
  mountpoint -q "$MNT" || mount "$MNT"
}

# go_wanted GOMOD prints the Go release go.mod asks for: its toolchain
# line, else its go line ("1.N" names release 1.N.0 since Go 1.21).
go_wanted() {
  local v
  v=$(awk '$1 == "toolchain" { sub(/^go/, "", $2); print $2; exit }' "$1")
  [ -n "$v" ] || v=$(awk '$1 == "go" { print $2; exit }' "$1")
  case $v in
    "") ;;
    *.*.*) echo "$v" ;;
    *) echo "$v.0" ;;
  esac
}

# go_sha256 FILE reads go.dev's release list (JSON, ?mode=json) and prints
# FILE's sha256, with sed rather than jq or python, which a minimal box
# lacks.
go_sha256() {
  tr -d ' \t\n' | tr '}' '\n' | grep -F "\"filename\":\"$1\"" |
    sed -n 's/.*"sha256":"\([0-9a-f]\{64\}\)".*/\1/p' | head -1 || true
}

# --- the report -----------------------------------------------------------

STATUS=0
SKIP_FILE=
TEE_PID=
BENCH_OPTS=() # driver options for bench (KEY=VALUE); a VM's script may set them

# start_report empties this VM's report directory and keeps a copy of the
# whole provisioning output in it.
start_report() {
  rm -rf "$REPORT"
  mkdir -p "$REPORT"
  SKIP_FILE=$REPORT/.skip-reason
  [ -f "$COMMON_LOG" ] && cp "$COMMON_LOG" "$REPORT/common.log"
  exec > >(tee -a "$REPORT/provision.log") 2>&1
  TEE_PID=$!
  trap finish_report EXIT
  {
    echo "layerlab Vagrant VM $LAYERLAB_VM, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "kernel $(uname -r); $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo
  } >"$REPORT/summary.txt"
}

record() { printf '%-5s %-10s %s\n' "$1" "$2" "${3:-}" >>"$REPORT/summary.txt"; }

# skip REASON: called inside a step, ends it as SKIP.
skip() {
  echo "SKIP: $*"
  echo "$*" >"$SKIP_FILE"
  exit 77
}

# step NAME CMD...: runs CMD (errexit on, in a subshell) with its output
# in NAME.log and on the console, and records the outcome. Never aborts
# the run: later steps still say what they can. With STEP_CONSOLE set to
# an extended regexp, the console only gets the lines matching it (go
# test -v prints tens of thousands; the log has them all).
step() {
  local name=$1 rc filter=${STEP_CONSOLE:-}
  shift
  log "=== $name${filter:+ (console: the lines matching $filter; all in $name.log)}"
  rm -f "$SKIP_FILE"
  set +e
  (
    set -e
    "$@"
  ) 2>&1 | tee "$REPORT/$name.log" | grep --line-buffered -E "${filter:-.}"
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" -eq 0 ]; then
    record PASS "$name" "$(step_note "$name")"
  elif [ "$rc" -eq 77 ] && [ -f "$SKIP_FILE" ]; then
    record SKIP "$name" "$(cat "$SKIP_FILE")"
  else
    record FAIL "$name" "exit $rc; see $name.log"
    STATUS=1
  fi
  log "=== $name: $(tail -1 "$REPORT/summary.txt" | cut -c1-5 | tr -d ' ')"
}

# step_note: what a passing step's log says in one line.
step_note() {
  case $1 in
    test)
      local f=$REPORT/test.log
      echo "$(grep -c -- '--- PASS' "$f") passed, $(grep -c -- '--- SKIP' "$f") skipped (tests and subtests; skips listed below)"
      ;;
  esac
}

finish_report() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ "$STATUS" -eq 0 ]; then
    record FAIL setup "the provisioner stopped (exit $rc) before its steps finished; see provision.log"
    STATUS=1
  fi
  if [ -f "$REPORT/test.log" ] && grep -q -- '--- SKIP' "$REPORT/test.log"; then
    {
      echo
      echo "Skipped tests (each one's reason is in test.log, just above its '--- SKIP' line):"
      grep -- '--- SKIP' "$REPORT/test.log" | sed 's/^ */  /'
    } >>"$REPORT/summary.txt"
  fi
  rm -f "$SKIP_FILE"
  chmod -R a+rX "$REPORT" # the host copies it as the SSH user
  echo
  cat "$REPORT/summary.txt"
  echo
  log "report in $REPORT (on the host: results/vagrant-$LAYERLAB_VM/)"
  # Let tee write the last lines before Vagrant sees the script end.
  exec >&- 2>&-
  if [ -n "$TEE_PID" ]; then wait "$TEE_PID" 2>/dev/null || true; fi
  exit "$STATUS"
}

# --- the steps ------------------------------------------------------------

facts() {
  cd "$LAYERLAB_SRC"
  echo "vm: $LAYERLAB_VM"
  echo "kernel: $(uname -a)"
  echo "os: $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "go: $(go version 2>&1)"
  echo "commit: $(git describe --always --dirty 2>/dev/null || echo unknown)"
  echo "cgroup: $(stat -fc %T /sys/fs/cgroup)"
  echo
  echo "# findmnt $MNT"
  findmnt "$MNT" || echo "$MNT is not a mount point (on the root filesystem)"
  echo
  echo "# lsblk"
  lsblk -o NAME,SIZE,TYPE,FSTYPE,LABEL,MOUNTPOINT
  if declare -F vm_facts >/dev/null; then
    echo
    vm_facts
  fi
}

build() {
  cd "$LAYERLAB_SRC"
  make build PACKAGES="$SETUP_PACKAGES"
  bin/layerlab driver ls
}

# Output is captured before grep -q reads it: under pipefail a writer that
# grep -q stopped reading from fails the pipeline with SIGPIPE.
registered() { # DRIVER: is it in this build's registry?
  local out
  out=$("$LAYERLAB_SRC/bin/layerlab" driver ls --json)
  grep -q "\"name\": \"$1\"" <<<"$out"
}

# probe DRIVER: the driver's own probe of its home on the VM's disk must
# find it usable. MNT is layerlab's default data root, so no flag is
# passed (the flag's name has changed before); the home is checked instead.
probe() {
  cd "$LAYERLAB_SRC"
  registered "$1" || skip "driver $1 is not registered in this build of layerlab (cmd/layerlab/main.go)"
  bin/layerlab driver info "$1"
  bin/layerlab driver info "$1" --json >"$REPORT/driver-info.json"
  grep -q "\"home\": \"$MNT/$1\"" "$REPORT/driver-info.json" || {
    echo "layerlab's default home for $1 is no longer under $MNT, where this VM's disk is; see driver-info.json"
    return 1
  }
  grep -q '"available": true' "$REPORT/driver-info.json" || {
    echo "the probe finds $1 unusable on $MNT; see above"
    return 1
  }
}

# tests TMPDIR PKG...: the packages' tests, as `make host-test` runs them.
# Their fixtures make loop filesystems (or a zfs pool on a file) under
# TMPDIR; what exists of PKG... runs, and all missing is a skip.
tests() {
  cd "$LAYERLAB_SRC"
  local tmp=$1 pkgs=() p
  shift
  for p in "$@"; do
    if [ -d "${p%/...}" ]; then pkgs+=("$p"); else echo "no ${p%/...} in this tree"; fi
  done
  [ ${#pkgs[@]} -gt 0 ] || skip "none of $* is in this tree yet"
  mkdir -p "$tmp"
  echo "TMPDIR=$tmp go test ${pkgs[*]}"
  TMPDIR=$tmp bash scripts/leakcheck.sh go test -count=1 -timeout "${LAYERLAB_TEST_TIMEOUT:-60m}" -v "${pkgs[@]}"
}

# bench DRIVER TMPDIR [OPTION...]: `layerlab bench` for the driver on MNT
# when the binary has that command (its flags are read from its --help, as
# the harness is still landing), else `make bench`, which says what it runs.
bench() {
  cd "$LAYERLAB_SRC"
  local driver=$1 tmp=$2 help flags o
  shift 2
  if ! help=$(bin/layerlab bench --help 2>&1); then
    echo "bin/layerlab has no bench command (\`bin/layerlab bench --help\` failed), so this runs"
    echo "\`make bench\` instead: the Go benchmarks that exist, on loop filesystems under TMPDIR,"
    echo "which measure overlay2's snapshot cycle, not $driver on this VM's disk."
    mkdir -p "$tmp"
    TMPDIR=$tmp make bench PACKAGES="$SETUP_PACKAGES"
    return
  fi
  registered "$driver" || skip "layerlab bench exists, but driver $driver is not registered in this build"
  flags=$(printf '%s\n' "$help" | sed -n '/^Flags:/,/^Global Flags:/p')
  has() { grep -qE -- "--$1( |=|$)" <<<"$flags"; }
  local args=(bench)
  has driver && args+=(--driver "$driver")
  if has root; then # the VM's real filesystem, not loop files
    mkdir -p "$MNT/bench"
    args+=(--root "$MNT/bench")
  fi
  has out && args+=(--out "$REPORT/bench")
  if [ -n "${LAYERLAB_BENCH_PROFILE:-}" ] && has profile; then args+=(--profile "$LAYERLAB_BENCH_PROFILE"); fi
  for o in "$@"; do
    has opt || {
      echo "layerlab bench has no --opt; cannot pass $o"
      return 1
    }
    args+=(--opt "$driver:$o")
  done
  echo "bin/layerlab ${args[*]}"
  bash scripts/leakcheck.sh bin/layerlab "${args[@]}"
}

# run_suite DRIVER TEST_TMPDIR PKG... : the steps every VM runs once its
# disk is ready. BENCH_OPTS (array, optional) are driver options for bench.
run_suite() {
  local driver=$1 tmp=$2
  shift 2
  facts >"$REPORT/env.txt" 2>&1 || true
  step build build
  if [ "$STATUS" -ne 0 ]; then
    record SKIP probe "the build failed"
    record SKIP test "the build failed"
    record SKIP bench "the build failed"
    return 0
  fi
  step probe probe "$driver"
  STEP_CONSOLE='^(ok |FAIL|--- FAIL|panic:|SKIP:|TMPDIR=|no )' step test tests "$tmp" "$@"
  step bench bench "$driver" "$tmp" "${BENCH_OPTS[@]}"
}
