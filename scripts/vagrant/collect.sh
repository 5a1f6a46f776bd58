#!/usr/bin/env bash
# Runs on the host. Copies results/vagrant-<vm>/ out of running Vagrant
# VMs into this project folder. The Vagrantfile does the same by itself
# after every successful `vagrant up`, `provision` and `reload`; run this
# after a provisioning that failed (Vagrant then stops before its
# triggers), or any time. Needs no plugin: `vagrant ssh-config` and the
# host's ssh and scp, on either provider.
#
# usage: scripts/vagrant/collect.sh [VM...]   (default: every running VM)
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v vagrant >/dev/null || {
  echo "collect: vagrant is not installed" >&2
  exit 1
}
vms=("$@")
if [ ${#vms[@]} -eq 0 ]; then
  # machine-readable lines: time,target,type,data...
  mapfile -t vms < <(vagrant status --machine-readable | awk -F, '$3 == "state" && $4 == "running" { print $2 }')
fi
[ ${#vms[@]} -gt 0 ] || {
  echo "collect: no running VM; start one with vagrant up NAME" >&2
  exit 1
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rc=0
mkdir -p results
for vm in "${vms[@]}"; do
  remote=/layerlab/results/vagrant-$vm
  vagrant ssh-config "$vm" >"$work/ssh-config" # one Host entry, named after the VM
  ssh_() { ssh -F "$work/ssh-config" "$vm" "$@"; }
  if ! ssh_ "test -d $remote"; then
    echo "collect: $vm has no $remote yet (was it provisioned?)" >&2
    rc=1
    continue
  fi
  ssh_ "sudo chmod -R a+rX $remote" # root wrote it
  rm -rf "results/vagrant-$vm.part"
  if scp -F "$work/ssh-config" -r -q "$vm:$remote" "results/vagrant-$vm.part"; then
    rm -rf "results/vagrant-$vm"
    mv "results/vagrant-$vm.part" "results/vagrant-$vm"
    echo "collect: results/vagrant-$vm/ ($(find "results/vagrant-$vm" -type f | wc -l) files)"
  else
    echo "collect: copying $remote from $vm failed" >&2
    rm -rf "results/vagrant-$vm.part"
    rc=1
  fi
done
exit $rc
