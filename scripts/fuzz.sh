#!/usr/bin/env bash
# `make fuzz`: a short fuzz run of each target (go test fuzzes one target
# per invocation). Each runs a fixed number of executions by default, not
# a duration: with a duration, Go before 1.27 can fail a target with a
# bare "context deadline exceeded" when -fuzztime runs out while a worker
# is busy (golang/go#75804), which a loaded 2-core machine hits. Set
# FUZZTIME (e.g. 1m) to fuzz every target that long instead.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
# package target executions (about 5 s each on 2 cores)
targets=(
  "./drivers/layer/ FuzzApply 3000"
  "./drivers/layer/ FuzzEntryName 35000"
  "./drivers/btrfs/ FuzzParseSend 50000"
  "./runtime/logs/ FuzzRead 20000"
  "./runtime/logs/ FuzzParseTime 100000"
  "./runtime/logs/ FuzzReadLocal 4000"
  "./runtime/logs/ FuzzValidate 40000"
  "./runtime/images/ FuzzParseChanges 100000"
  "./runtime/api/ FuzzParseDetachKeys 100000"
  "./cmd/layerlabd/ FuzzConfigFile 20000"
  "./cmd/layerlabd/ FuzzParseHost 30000"
  "./runtime/stats/ FuzzParse 60000"
  "./runtime/volumes/ FuzzParseBind 100000"
  "./runtime/limits/ FuzzParseCgroupRule 100000"
  "./drivers/containerd/ FuzzActiveLabels 100000"
  "./reports/ FuzzMerge 20000"
  "./runtime/registry/ FuzzDecodeAuth 100000"
  "./runtime/registry/ FuzzParseInsecure 100000"
  "./runtime/registry/ FuzzParsePlatform 100000"
  "./runtime/build/ FuzzParseArgs 100000"
  "./runtime/build/ FuzzDockerfile 2000"
  "./runtime/build/ FuzzIgnore 5000"
  "./runtime/build/ FuzzAddArchive 3000"
  "./runtime/network/ FuzzParsePool 100000"
  "./runtime/network/ FuzzParseBindings 100000"
  "./runtime/network/ FuzzParseResolv 100000"
  "./runtime/network/ FuzzParseLink 100000"
  "./bench/ FuzzReadStream 20000"
)
for t in "${targets[@]}"; do
  read -r pkg name execs <<<"$t"
  budget=${FUZZTIME:-${execs}x}
  echo "fuzz: $name in $pkg for $budget"
  "$GO" test "$pkg" -run '^$' -fuzz "^$name\$" -fuzztime "$budget"
done
