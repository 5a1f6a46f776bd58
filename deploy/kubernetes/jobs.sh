#!/usr/bin/env bash
# Prints one benchmark Job per node (bench-job.yaml filled in), for
# `kubectl apply -f -`. Without NODE arguments it asks kubectl for every
# node of the cluster.
#
# usage: jobs.sh [-p PROFILE] [-i IMAGE] [-r RUN] [-a ARG]... [NODE...]
#   -p  bench profile: quick (default), standard, paper, runtime
#   -i  image (default layerlab/bench:local, what `make image` builds)
#   -r  run name: the results go to /var/lib/layerlab/bench/RUN/<node> on
#       each node (default: the date and time, e.g. 20261204-173000)
#   -a  one more argument for `layerlab bench` (repeat: -a --driver -a btrfs)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
profile=quick image=layerlab/bench:local run=$(date -u +%Y%m%d-%H%M%S)
extra=()
while getopts p:i:r:a: opt; do
  case $opt in
    p) profile=$OPTARG ;;
    i) image=$OPTARG ;;
    r) run=$OPTARG ;;
    a) extra+=("$OPTARG") ;;
    *) sed -n '2,12p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
# Values are pasted into YAML and a hostPath: refuse what would break out.
for v in "$profile" "$run"; do
  if ! [[ $v =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]]; then
    echo "jobs.sh: '$v': use letters, digits, '.', '_' and '-' only" >&2; exit 2
  fi
done
if ! [[ $image =~ ^[A-Za-z0-9][A-Za-z0-9./:@_-]*$ ]]; then
  echo "jobs.sh: image '$image' is not an image reference" >&2; exit 2
fi
nodes=("$@")
if [ ${#nodes[@]} -eq 0 ]; then
  mapfile -t nodes < <(kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
  [ ${#nodes[@]} -gt 0 ] || { echo "jobs.sh: kubectl lists no nodes" >&2; exit 1; }
fi
# Every node is checked before anything is printed, so a bad name never
# leaves half the Jobs applied.
declare -A names=()
jobnames=()
for node in "${nodes[@]}"; do
  # A node name is a DNS subdomain (dots allowed); a Job name here is
  # kept a DNS label short enough for the job-name label of its pods.
  name=$(printf '%s' "$node" | tr -c 'a-z0-9-' '-' | cut -c1-40 | sed 's/-*$//')
  if ! [[ $node =~ ^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$ ]] || [ -z "$name" ]; then
    echo "jobs.sh: '$node' is not a Kubernetes node name" >&2; exit 2
  fi
  if [ -n "${names[$name]:-}" ]; then
    echo "jobs.sh: nodes '${names[$name]}' and '$node' would get the same Job name $name" >&2; exit 2
  fi
  names[$name]=$node
  jobnames+=("$name")
done
for i in "${!nodes[@]}"; do
  node=${nodes[$i]} name=${jobnames[$i]}
  echo "---"
  awk -v node="$node" -v name="$name" -v run="$run" -v profile="$profile" -v image="$image" -v extra="$(printf '%s\n' "${extra[@]+"${extra[@]}"}")" '
    /^#/ { next }   # the template note
    {
      gsub(/@NODE@/, node); gsub(/@NAME@/, name); gsub(/@RUN@/, run); gsub(/@PROFILE@/, profile)
      sub(/image: layerlab\/bench:local$/, "image: " image)
    }
    /# extra args$/ {
      indent = $0; sub(/#.*/, "", indent)
      n = split(extra, args, "\n")
      for (i = 1; i <= n; i++) if (args[i] != "") { a = args[i]; gsub(/\\/, "\\\\", a); gsub(/"/, "\\\"", a); print indent "- \"" a "\"" }
      next
    }
    { print }' "$here/bench-job.yaml"
done
