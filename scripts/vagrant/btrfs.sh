#!/usr/bin/env bash
# Vagrant provisioner of the btrfs VM (Debian 12): the whole extra disk as
# btrfs at /var/lib/layerlab, then the btrfs driver's and the quota
# package's tests (qgroups included) and the benchmark.
set -euo pipefail
# shellcheck source=scripts/vagrant/lib.sh
. "${LAYERLAB_SRC:-/layerlab}/scripts/vagrant/lib.sh"
start_report

apt_install btrfs-progs
if ! blkid -L "$LABEL" >/dev/null; then
  dev=$(find_disk)
  log "formatting $dev: btrfs, label $LABEL"
  mkfs.btrfs -L "$LABEL" "$dev" # no -f: refuse a disk that holds anything
  udevadm settle
fi
ensure_mount "LABEL=$LABEL" btrfs defaults,nofail
[ "$(findmnt -no FSTYPE "$MNT")" = btrfs ] || die "$MNT is $(findmnt -no FSTYPE "$MNT"), not btrfs"

# The tests' loop images live here; without copy-on-write (+C, set on the
# empty directory and inherited by new files) they do not fragment the way
# VM images on btrfs do.
mkdir -p "$MNT/tmp"
[ -n "$(ls -A "$MNT/tmp")" ] || chattr +C "$MNT/tmp"

vm_facts() {
  echo "# btrfs filesystem usage $MNT"
  btrfs filesystem usage "$MNT"
  echo
  echo "# btrfs --version"
  btrfs --version
}

run_suite btrfs "$MNT/tmp" ./drivers/btrfs/... ./quota/...
