#!/usr/bin/env bash
# Vagrant provisioner of the devicemapper VM (Debian 12): the extra disk
# becomes an LVM thin pool the way dockerd's direct-lvm mode wanted it
# (volume group layerlab, pool thinpool from 95% of it, a separate 1%
# metadata volume, autoextend by profile), handed to the driver as
# dm.thinpooldev=/dev/mapper/layerlab-thinpool. /var/lib/layerlab, where
# the driver keeps its metadata, stays on the root filesystem.
#
# The driver's conformance tests make their own pools on loop devices; the
# pool on the disk is what `layerlab bench` measures (--opt
# devicemapper:dm.thinpooldev=...). The thinpool step checks the pool itself
# with LVM: a thin volume and a thin snapshot of it, made, written, read and
# removed. While the tree has no drivers/devicemapper, or the CLI does not
# register the driver, the steps that need it skip saying so.
set -euo pipefail
# shellcheck source=scripts/vagrant/lib.sh
. "${LAYERLAB_SRC:-/layerlab}/scripts/vagrant/lib.sh"
start_report

VG=$LABEL
POOL=thinpool
POOLDEV=/dev/mapper/$VG-$POOL

apt_install lvm2 thin-provisioning-tools dmsetup e2fsprogs

lv_exists() { lvs "$VG/$1" >/dev/null 2>&1; }
is_pool() { [ "$(lvs --noheadings -o lv_attr "$VG/$POOL" 2>/dev/null | tr -d ' ' | cut -c1)" = t ]; }

if ! vgs "$VG" >/dev/null 2>&1; then
  dev=$(find_disk)
  log "making $dev an LVM physical volume in volume group $VG"
  pvcreate "$dev"
  vgcreate "$VG" "$dev"
fi
# Each piece is checked on its own, so a run cut short half-way resumes.
POOL_NEW=
if ! is_pool; then
  POOL_NEW=1
  lv_exists "$POOL" || lvcreate -y --wipesignatures y -n "$POOL" -l 95%VG "$VG"
  lv_exists "${POOL}meta" || lvcreate -y --wipesignatures y -n "${POOL}meta" -l 1%VG "$VG"
  # --zero n: the driver zeroes nothing it does not read; 512K chunks as
  # dockerd used.
  lvconvert -y --zero n -c 512K --thinpool "$VG/$POOL" --poolmetadata "$VG/${POOL}meta"
fi
# Grow the pool by 20% of the VG when it is 80% full (needs dmeventd's
# monitoring, which lvm2 turns on for thin pools).
mkdir -p /etc/lvm/profile
cat >/etc/lvm/profile/layerlab-thinpool.profile <<'PROFILE'
activation {
  thin_pool_autoextend_threshold=80
  thin_pool_autoextend_percent=20
}
PROFILE
lvchange --metadataprofile layerlab-thinpool "$VG/$POOL"
lvchange -ay "$VG/$POOL"
[ -b "$POOLDEV" ] || die "$POOLDEV is missing after activating $VG/$POOL"
status=$(dmsetup status "$(basename "$POOLDEV")")
[[ $status == *" thin-pool "* ]] || die "$POOLDEV is not a thin pool: $status"

# The driver's option: bench passes it (--opt devicemapper:dm.thinpooldev=...),
# and the file keeps it for runs by hand after `vagrant ssh`.
mkdir -p /etc/layerlab
echo "dm.thinpooldev=$POOLDEV" >/etc/layerlab/devicemapper.options
BENCH_OPTS=("dm.thinpooldev=$POOLDEV")

vm_facts() {
  echo "# lvs"
  lvs -a -o+seg_monitor,metadata_percent,data_percent "$VG"
  echo
  echo "# dmsetup status"
  dmsetup status
  echo
  echo "driver option: $(cat /etc/layerlab/devicemapper.options)"
}

# thinpool: a thin volume, a file on it, a thin snapshot that still has the
# file after the origin changed; everything removed again, so the pool is
# left empty for the driver. Only on the run that made the pool: the
# driver numbers its own thin devices in it, unknown to LVM, so a later
# lvcreate could pick an id the driver holds. Later runs report the first
# run's result (kept in SMOKE_MARK) and the pool's status.
SMOKE_MARK=/etc/layerlab/thinpool-check
thinpool() {
  local smoke=llsmoke mnt result when
  dmsetup status "$(basename "$POOLDEV")"
  if [ -z "$POOL_NEW" ]; then
    [ -f "$SMOKE_MARK" ] || skip "the pool predates this check; recreate it (vagrant destroy $LAYERLAB_VM) to run it"
    read -r result when <"$SMOKE_MARK"
    if [ "$result" != PASS ]; then
      echo "the LVM check failed when the pool was made ($when); see that run's thinpool.log, or recreate the VM"
      return 1
    fi
    skip "passed when the pool was made ($when); not repeated on a pool the driver may have used (LVM's thin device ids and the driver's would clash)"
  fi
  echo "FAIL $(date -u +%FT%TZ)" >"$SMOKE_MARK" # until it passes
  mnt=$(mktemp -d)
  trap 'umount -q "$mnt/o" "$mnt/s" 2>/dev/null; lvremove -fy "$VG/$smoke-snap" "$VG/$smoke" >/dev/null 2>&1; rm -rf "$mnt"' EXIT
  lvremove -fy "$VG/$smoke-snap" "$VG/$smoke" >/dev/null 2>&1 || true # left by a killed run
  lvcreate -y -V 256M -T "$VG/$POOL" -n "$smoke"
  mkfs.ext4 -q "/dev/$VG/$smoke"
  mkdir "$mnt/o" "$mnt/s"
  mount "/dev/$VG/$smoke" "$mnt/o"
  echo before >"$mnt/o/file"
  umount "$mnt/o"
  lvcreate -y -s -n "$smoke-snap" "$VG/$smoke"
  lvchange -ay -K "$VG/$smoke-snap" # thin snapshots are created with activation skipped
  mount "/dev/$VG/$smoke" "$mnt/o"
  echo after >"$mnt/o/file"
  sync
  mount -o ro "/dev/$VG/$smoke-snap" "$mnt/s"
  [ "$(cat "$mnt/s/file")" = before ] || { echo "the snapshot sees: $(cat "$mnt/s/file")"; return 1; }
  [ "$(cat "$mnt/o/file")" = after ]
  lvs -a "$VG"
  echo "thin volume and thin snapshot on $POOLDEV: ok"
  echo "PASS $(date -u +%FT%TZ)" >"$SMOKE_MARK"
}

step thinpool thinpool
run_suite devicemapper /var/tmp/layerlab-tmp ./drivers/devicemapper/...
