#!/usr/bin/env bash
# Copies every node's report of one run out of the cluster, into
# DEST/<node>/ (results.json and the rendered report), then merges them:
# `layerlab report merge DEST --out DEST/merged` when layerlab is on PATH.
# It starts the results collector (results-daemonset.yaml), waits for its
# pods, copies with `kubectl cp` from each, and deletes it again.
#
# usage: collect.sh RUN [DEST]   (DEST defaults to ./results-RUN)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
run=${1:?usage: collect.sh RUN [DEST]}
dest=${2:-./results-$run}
ns=layerlab-bench
if ! [[ $run =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]]; then
  echo "collect.sh: '$run' is not a run name (jobs.sh -r)" >&2; exit 2
fi
running=$(kubectl -n "$ns" get jobs -l "layerlab.dev/run=$run" -o jsonpath='{range .items[?(@.status.active)]}{.metadata.name}{" "}{end}')
if [ -n "$running" ]; then
  echo "collect.sh: still running: $running (kubectl -n $ns get jobs -l layerlab.dev/run=$run)" >&2; exit 1
fi
kubectl apply -f "$here/results-daemonset.yaml"
trap 'kubectl -n "$ns" delete daemonset layerlab-results --wait=false >/dev/null' EXIT
kubectl -n "$ns" rollout status daemonset/layerlab-results --timeout=5m
mkdir -p "$dest"
kubectl -n "$ns" get pods -l app.kubernetes.io/name=layerlab-results \
  -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.spec.nodeName}{"\n"}{end}' |
while read -r pod node; do
  # </dev/null: kubectl must not eat the pod list this loop reads.
  if ! kubectl -n "$ns" exec "$pod" -- test -f "/results/$run/$node/results.json" </dev/null 2>/dev/null; then
    echo "collect.sh: $node has no results for run $run (did its Job run there? kubectl -n $ns logs job/layerlab-bench-...)" >&2
    continue
  fi
  kubectl -n "$ns" cp "$pod:/results/$run/$node" "$dest/$node" </dev/null
  echo "collect.sh: $node -> $dest/$node"
done
if command -v layerlab >/dev/null; then
  layerlab report merge "$dest" --out "$dest/merged"
else
  echo "collect.sh: now run: layerlab report merge $dest --out $dest/merged"
fi
