#!/usr/bin/env bash
# Vagrant provisioner of the overlay2-xfs VM (Debian 12): the extra disk as
# xfs with ftype=1 (overlay needs d_type) mounted with pquota at
# /var/lib/layerlab, so overlay2 runs on a real disk with the project
# quota that backs its size= option. Then the overlay drivers' and the
# quota package's tests, which include the xfs project-quota suites
# `make vm-test` runs in the qemu guest, and the benchmark.
set -euo pipefail
# shellcheck source=scripts/vagrant/lib.sh
. "${LAYERLAB_SRC:-/layerlab}/scripts/vagrant/lib.sh"
start_report

apt_install xfsprogs
if ! blkid -L "$LABEL" >/dev/null; then
  dev=$(find_disk)
  log "formatting $dev: xfs, ftype=1, label $LABEL"
  mkfs.xfs -n ftype=1 -L "$LABEL" "$dev" # no -f: refuse a disk that holds anything
  udevadm settle
fi
ensure_mount "LABEL=$LABEL" xfs defaults,pquota,nofail
# Quota accounting can only be switched on at mount time, not by remount.
has_prjquota() { [[ ,$(findmnt -no OPTIONS "$MNT"), == *,prjquota,* ]]; }
if ! has_prjquota; then
  log "$MNT is mounted without project quota; mounting it again"
  umount "$MNT"
  mount "$MNT"
fi
has_prjquota || die "$MNT still has no prjquota: $(findmnt -no OPTIONS "$MNT")"
[[ $(xfs_info "$MNT") == *ftype=1* ]] || die "xfs on $MNT has ftype=0; overlay needs ftype=1 (reformat the disk)"

vm_facts() {
  echo "# xfs_info $MNT"
  xfs_info "$MNT"
  echo
  echo "# xfs_quota state"
  xfs_quota -x -c 'state -p' "$MNT"
}

run_suite overlay2 "$MNT/tmp" ./drivers/overlay/... ./quota/...
