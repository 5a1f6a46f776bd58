#!/usr/bin/env bash
# Checks the Vagrant VMs' setup (Vagrantfile, scripts/vagrant/) on a machine
# with no hypervisor: no VM is ever started.
#
#   - bash -n on every script, and shellcheck when it is installed;
#   - the provisioners' helpers (as root, touching nothing): go.mod -> Go
#     release, the tarball's sha256 from go.dev's release list, find_disk's
#     choice of the disk to format (stub lsblk and blkid), and the
#     step/report plumbing;
#   - `vagrant validate --ignore-provider`: the common config, provisioner
#     paths and triggers, with or without any provider or plugin;
#   - `vagrant validate` with a stub VBoxManage that only answers
#     --version, so the VirtualBox provider block is validated too;
#   - `vagrant validate` with the libvirt provider when the vagrant-libvirt
#     plugin is installed;
#   - the trigger that copies reports to the host, against a fake guest.
# The vagrant checks skip, saying so, when vagrant is not installed
# (Debian: apt-get install --no-install-recommends vagrant).
#
# usage: bash scripts/vagrant/vagrant_test.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

passed=0 failed=0 skipped=0
pass() {
  echo "PASS $*"
  passed=$((passed + 1))
}
fail() {
  echo "FAIL $*"
  failed=$((failed + 1))
}
skip() {
  echo "SKIP $*"
  skipped=$((skipped + 1))
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Machine state goes here, not to .vagrant/: a check must never see or
# touch a developer's real VMs. No version check over the network.
export VAGRANT_DOTFILE_PATH=$work/dotfile VAGRANT_CHECKPOINT_DISABLE=1

# --- the scripts ------------------------------------------------------------

for f in scripts/vagrant/*.sh; do
  if bash -n "$f" 2>"$work/err"; then pass "bash -n $f"; else fail "bash -n $f: $(cat "$work/err")"; fi
done
# The VMS table: lines like   "btrfs" => :debian,
while read -r vm; do
  if [ -f "scripts/vagrant/$vm.sh" ]; then pass "VM $vm has scripts/vagrant/$vm.sh"; else fail "VM $vm has no scripts/vagrant/$vm.sh"; fi
done < <(sed -n 's/^  "\([a-z0-9-]*\)" *=> *:[a-z]*,.*/\1/p' Vagrantfile)

if command -v shellcheck >/dev/null; then
  if shellcheck -x scripts/vagrant/*.sh >"$work/sc" 2>&1; then
    pass "shellcheck -x scripts/vagrant/*.sh ($(shellcheck --version | awk '/^version:/ {print $2}'))"
  else
    cat "$work/sc"
    fail "shellcheck -x scripts/vagrant/*.sh"
  fi
else
  skip "shellcheck: not installed (Debian: apt-get install shellcheck)"
fi

# --- the helpers ------------------------------------------------------------

# lib.sh refuses to be sourced by anyone but root (the provisioners run as
# root); its helpers touch nothing here.
if [ "$(id -u)" != 0 ]; then
  skip "provisioner helpers: lib.sh needs root"
else
  lib() { LAYERLAB_VM=unit LAYERLAB_SRC=$work/src bash -c "set -euo pipefail; . '$root/scripts/vagrant/lib.sh'; $1"; }
  mkdir -p "$work/src"
  check_go() { # go.mod text, wanted release
    printf 'module x\n\n%b\n' "$1" >"$work/go.mod"
    got=$(lib "go_wanted '$work/go.mod'")
    if [ "$got" = "$2" ]; then pass "go_wanted: '$1' -> '$2'"; else fail "go_wanted: '$1' -> '$got', want '$2'"; fi
  }
  check_go 'go 1.26.8' 1.26.8
  check_go 'go 1.26' 1.26.0
  check_go 'go 1.26.8\n\ntoolchain go1.27.1' 1.27.1
  check_go 'require x v1.0.0' ''
  got=$(lib "go_wanted '$root/go.mod'")
  if [ -n "$got" ]; then pass "go_wanted: this go.mod asks for Go $got"; else fail "go_wanted: nothing from go.mod"; fi

  # The shape of go.dev/dl/?mode=json&include=all, two releases.
  a=$(printf 'a%.0s' {1..64}) b=$(printf 'b%.0s' {1..64}) c=$(printf 'c%.0s' {1..64})
  cat >"$work/releases.json" <<EOF
[
 {
  "version": "go1.26.8",
  "stable": true,
  "files": [
   {
    "filename": "go1.26.8.linux-amd64.tar.gz",
    "os": "linux",
    "arch": "amd64",
    "version": "go1.26.8",
    "sha256": "$a",
    "size": 67000000,
    "kind": "archive"
   },
   {
    "filename": "go1.26.8.linux-arm64.tar.gz",
    "os": "linux",
    "arch": "arm64",
    "version": "go1.26.8",
    "sha256": "$b",
    "size": 64000000,
    "kind": "archive"
   }
  ]
 },
 {
  "version": "go1.26.7",
  "stable": true,
  "files": [
   {"filename": "go1.26.7.linux-amd64.tar.gz", "os": "linux", "arch": "amd64", "version": "go1.26.7", "sha256": "$c", "size": 1, "kind": "archive"}
  ]
 }
]
EOF
  for want in "go1.26.8.linux-amd64.tar.gz $a" "go1.26.8.linux-arm64.tar.gz $b" "go1.26.7.linux-amd64.tar.gz $c" "go1.99.0.linux-amd64.tar.gz "; do
    file=${want%% *} sum=${want#* }
    got=$(lib "go_sha256 $file <'$work/releases.json'")
    if [ "$got" = "$sum" ]; then pass "go_sha256 $file"; else fail "go_sha256 $file: got '$got', want '$sum'"; fi
  done

  # find_disk, which picks the disk to format, against stub lsblk and
  # blkid describing a guest's disks: NAME SIZE TYPE [children] [signature].
  mkdir -p "$work/diskstub"
  cat >"$work/diskstub/lsblk" <<'STUB'
#!/bin/sh
# -dbnpo NAME,SIZE,TYPE: the disks; -nro NAME DEV: DEV and its children
case "$*" in
  -dbnpo*) awk '{ print $1, $2, $3 }' "$DISKS" ;;
  -dnpo*) awk '{ print $1, $2 }' "$DISKS" ;;
  -nro\ NAME\ *) dev=$3; awk -v d="$dev" '$1 == d { print d; for (i = 0; i < $4; i++) print d i }' "$DISKS" ;;
  *) echo "stub lsblk: $*" >&2; exit 1 ;;
esac
STUB
  cat >"$work/diskstub/blkid" <<'STUB'
#!/bin/sh
# blkid -p DEV: 0 when DEV carries a signature, 2 when none
[ "$1" = -p ] || exit 4
awk -v d="$2" '$1 == d && $5 != "" { found = 1 } END { exit found ? 0 : 2 }' "$DISKS"
STUB
  chmod +x "$work/diskstub/lsblk" "$work/diskstub/blkid"
  check_disk() { # name, want ("" for a refusal), then the disks, one a line
    local name=$1 want=$2 got rc=0
    shift 2
    printf '%s\n' "$@" >"$work/disks"
    got=$(DISKS=$work/disks PATH="$work/diskstub:$PATH" LAYERLAB_DISK_SERIAL=no-such-serial-$$ lib find_disk 2>"$work/disk.err") || rc=$?
    if [ -n "$want" ] && [ "$rc" = 0 ] && [ "$got" = "$want" ]; then
      pass "find_disk: $name -> $want"
    elif [ -z "$want" ] && [ "$rc" != 0 ] && [ -z "$got" ]; then
      pass "find_disk: $name -> refused: $(sed 's/.*error: //' "$work/disk.err" | cut -c1-70)..."
    else
      fail "find_disk: $name -> '$got' (exit $rc: $(cat "$work/disk.err")), want '${want:-a refusal}'"
    fi
  }
  G=$((1 << 30))
  check_disk "Debian box, VirtualBox" /dev/sdb "/dev/sda $((20 * G)) disk 3 gpt" "/dev/sdb $((20 * G)) disk 0"
  check_disk "Ubuntu box, VirtualBox (cloud-init disk)" /dev/sdc "/dev/sda $((40 * G)) disk 1 dos" "/dev/sdb 10485760 disk 0" "/dev/sdc $((20 * G)) disk 0"
  check_disk "zram and a cd-rom are no disks to format" /dev/vdb "/dev/vda $((20 * G)) disk 1 dos" "/dev/zram0 $((4 * G)) disk 0" "/dev/sr0 $((1 * G)) rom 0" "/dev/vdb $((20 * G)) disk 0"
  check_disk "the extra disk already holds xfs" "" "/dev/sda $((20 * G)) disk 3 gpt" "/dev/sdb $((20 * G)) disk 0 xfs"
  check_disk "the extra disk is an LVM PV" "" "/dev/sda $((20 * G)) disk 3 gpt" "/dev/sdb $((20 * G)) disk 1 LVM2_member"
  check_disk "two blank disks" "" "/dev/sda $((20 * G)) disk 3 gpt" "/dev/sdb $((20 * G)) disk 0" "/dev/sdc $((20 * G)) disk 0"
  check_disk "no extra disk" "" "/dev/sda $((20 * G)) disk 3 gpt"

  # The report: a passing, a skipping and a failing step; the failing one
  # stops at its first failed command, and the provisioner exits 1.
  rc=0
  lib 'start_report
    good() { echo fine; }
    later() { skip "not on this kernel"; }
    bad() { false; echo "errexit did not stop the step"; }
    step one good
    step two later
    step three bad
    echo after the steps' >"$work/report.out" 2>&1 || rc=$?
  rep=$work/src/results/vagrant-unit
  if [ "$rc" = 1 ] &&
    grep -q '^PASS  one' "$rep/summary.txt" &&
    grep -q '^SKIP  two  *not on this kernel' "$rep/summary.txt" &&
    grep -q '^FAIL  three  *exit 1' "$rep/summary.txt" &&
    ! grep -q 'errexit did not stop' "$rep/three.log" &&
    grep -q 'after the steps' "$rep/provision.log"; then
    pass "steps: PASS/SKIP/FAIL recorded, a failing step stops, the provisioner exits 1"
  else
    cat "$work/report.out"
    fail "steps: exit $rc; summary: $(cat "$rep/summary.txt" 2>/dev/null)"
  fi
fi

# --- vagrant ----------------------------------------------------------------

if ! command -v vagrant >/dev/null; then
  skip "vagrant validate: vagrant is not installed (Debian: apt-get install --no-install-recommends vagrant)"
  skip "vagrant validate (virtualbox config): vagrant is not installed"
  skip "vagrant validate (libvirt config): vagrant is not installed"
  skip "report-copy trigger: vagrant is not installed"
else
  echo "$(vagrant --version) ($(command -v vagrant))"
  validate() { # name, then env assignments for vagrant
    local name=$1
    shift
    if env "$@" vagrant validate "${VALIDATE_ARGS[@]}" >"$work/validate.out" 2>&1; then
      pass "$name"
    else
      fail "$name"
    fi
    sed 's/^/    /' "$work/validate.out"
  }

  VALIDATE_ARGS=(--ignore-provider)
  validate "vagrant validate --ignore-provider"

  # A stub VBoxManage makes the VirtualBox provider "usable", so validate
  # checks its block; validate itself only asks for the version.
  mkdir -p "$work/stub"
  cat >"$work/stub/VBoxManage" <<'STUB'
#!/bin/sh
[ "$1" = --version ] && echo 7.0.14r161095 && exit 0
echo "stub VBoxManage: $*" >&2
exit 1
STUB
  chmod +x "$work/stub/VBoxManage"
  VALIDATE_ARGS=()
  validate "vagrant validate (virtualbox provider, stub VBoxManage)" PATH="$work/stub:$PATH" VAGRANT_DEFAULT_PROVIDER=virtualbox

  if vagrant plugin list 2>/dev/null | grep -q '^vagrant-libvirt'; then
    validate "vagrant validate (libvirt provider)" VAGRANT_DEFAULT_PROVIDER=libvirt
  else
    skip "vagrant validate (libvirt provider): the vagrant-libvirt plugin is not installed"
  fi

  # The Vagrantfile's COLLECT lambda against a fake machine whose
  # "guest" is a directory here; Vagrant.configure is stubbed, so only the
  # constants load. The copy goes to a copy of the Vagrantfile's folder.
  if ! command -v ruby >/dev/null; then
    skip "report-copy trigger: no ruby"
  else
    mkdir -p "$work/host" "$work/guest/layerlab/results/vagrant-btrfs/bench"
    cp Vagrantfile "$work/host/"
    echo "PASS  build" >"$work/guest/layerlab/results/vagrant-btrfs/summary.txt"
    echo '{}' >"$work/guest/layerlab/results/vagrant-btrfs/bench/results.json"
    cat >"$work/collect.rb" <<'RUBY'
require "fileutils"
require "shellwords"
module Vagrant
  VERSION = "stub"
  def self.configure(*); end
end
load ARGV[0]
GUEST = ARGV[1]
class FakeUI
  def info(m); puts("info: #{m}"); end
  def warn(m); puts("warn: #{m}"); end
end
class FakeComm # runs the guest's commands here, /layerlab mapped into GUEST
  def map(s); s.gsub("/layerlab", File.join(GUEST, "layerlab")); end
  def test(cmd); system("bash", "-c", map(cmd)); end
  def sudo(cmd, _opts = nil); system("bash", "-c", map(cmd)) || raise("sudo failed: #{cmd}"); end
  def execute(cmd, _opts = nil)
    out = `bash -c #{Shellwords.escape(map(cmd))}`
    raise "execute failed: #{cmd}" unless $?.success?
    yield :stdout, out if block_given?
    0
  end
  def download(from, to); FileUtils.cp(map(from), to); end
end
Box = Struct.new(:name, :version)
Machine = Struct.new(:name, :ui, :communicate, :provider_name, :box)
ARGV[2..].each do |vm|
  COLLECT.call(Machine.new(vm.to_sym, FakeUI.new, FakeComm.new, :libvirt, Box.new("debian/bookworm64", "12.20250101.1")))
end
RUBY
    if ruby "$work/collect.rb" "$work/host/Vagrantfile" "$work/guest" btrfs zfs >"$work/collect.out" 2>&1 &&
      cmp -s "$work/guest/layerlab/results/vagrant-btrfs/summary.txt" "$work/host/results/vagrant-btrfs/summary.txt" &&
      cmp -s "$work/guest/layerlab/results/vagrant-btrfs/bench/results.json" "$work/host/results/vagrant-btrfs/bench/results.json" &&
      grep -q '^box: debian/bookworm64 12.20250101.1' "$work/host/results/vagrant-btrfs/host.txt" &&
      [ ! -e "$work/host/results/vagrant-zfs" ] && grep -q 'nothing to copy' "$work/collect.out"; then
      pass "report-copy trigger: copies results/vagrant-<vm>/ (nested files, host.txt), skips a VM without one"
    else
      fail "report-copy trigger"
    fi
    sed 's/^/    /' "$work/collect.out"
  fi
fi

echo
echo "vagrant_test: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
