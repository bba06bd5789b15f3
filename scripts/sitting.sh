#!/usr/bin/env bash
# One sitting, pagewire and QEMU side by side (issue 16): this machine's absolute times move by 2x from hour to
# hour, so the figures that are compared are taken back to back, and the load is recorded with each step.
#
#   scripts/sitting.sh [RUNS]          (default 3; needs QEMU: apt-get install qemu-system-x86 gcc-multilib iperf3)
#   ONLY='zero|fill' scripts/sitting.sh   a subset of the cases (regex over the case names below)
#
# Steps, each RUNS times: QEMU's own migration (../shared/qemu-anchor, TCG, multifd 2); pagewire's MigrationBench
# (warm JVMs) with the source guest's RAM on a memfd and on anonymous memory with transparent huge pages (as QEMU
# backs its guest RAM); the bare transport (TransportBench, 2 GiB, two channels); pagewire's demo in fresh JVMs with
# the launcher's AOT cache and without it (PAGEWIRE_AOT=off). Output: perf/target/reports/sitting-STAMP/ with every
# raw result and summary.md (medians, pagewire / QEMU).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
runs=${1:-3}
only=${ONLY:-}
anchor=${QEMU_ANCHOR:-$here/../shared/qemu-anchor}
out="$here/perf/target/reports/sitting-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$out"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$out/steps.log" >&2; }
want() { [ -z "$only" ] || [[ $1 =~ $only ]]; }
load() { uptime | sed 's/.*load average: //' ; }

. "$here/.mvn/find-jdk.sh"
command -v qemu-system-x86_64 >/dev/null || { echo "sitting.sh: no QEMU here: apt-get install qemu-system-x86 gcc-multilib" >&2; exit 2; }
command -v iperf3 >/dev/null || { echo "sitting.sh: no iperf3 here (the bare TCP reference): apt-get install iperf3" >&2; exit 2; }
[ -d "$anchor" ] || { echo "sitting.sh: no QEMU anchor at $anchor (set QEMU_ANCHOR)" >&2; exit 2; }
log "building (package, no tests)"
./mvnw -B -q -DskipTests package >&2 || exit 1
./pagewire --version >/dev/null || exit 1 # the launcher's stamp and AOT cache, before anything is timed
java_flags="--enable-native-access=ALL-UNNAMED --add-opens=java.base/jdk.internal.misc=ALL-UNNAMED --add-modules=jdk.incubator.vector -XX:+UseParallelGC"
cp="perf/target/perf-0.1.0-SNAPSHOT.jar:perf/target/lib/*"

# case | QEMU config (run_all.sh) | MigrationBench case | demo arguments
cases=(
  "zeroes-4g|zero4g_multifd2|zeroes-4g|"
  "fill-2g-dst-prepopulated|fill2g_multifd2|nonzero-2g-prepopulated|--ram 2G --pattern idle --zero-fraction 0 --dst-populate before"
  "idle-4g-never-written|idle4g_multifd2|never-written-4g|--ram 4G --pattern idle --zero-fraction 1.0"
)
echo "load at start: $(load)" > "$out/load.txt"
qemu_only=""; mb_cases=""; selected=()
for c in "${cases[@]}"; do
  IFS='|' read -r name qemu mb demo <<< "$c"
  want "$name" || continue
  selected+=("$c")
  qemu_only="${qemu_only:+$qemu_only|}^$qemu\$"; mb_cases="${mb_cases:+$mb_cases,}$mb"
done
[ -n "$mb_cases" ] || { echo "sitting.sh: ONLY='$only' matches no case" >&2; exit 2; }

log "QEMU: $qemu_only (load $(load))"
ONLY="$qemu_only" RUNS=$runs bash "$anchor/run_all.sh" "$out/qemu" > "$out/qemu.txt" 2>&1 || log "QEMU anchor failed: $out/qemu.txt"
echo "after QEMU: $(load)" >> "$out/load.txt"
for backing in memfd anonymous; do
  log "MigrationBench, source RAM $backing: $mb_cases (load $(load))"
  # shellcheck disable=SC2086
  "$JAVA_HOME/bin/java" $java_flags -cp "$cp" io.pagewire.perf.e2e.MigrationBench --cases "$mb_cases" --runs "$runs" \
    --src-backing "$backing" --out "$out/mb-$backing" > "$out/mb-$backing.txt" 2>&1 || log "MigrationBench failed: $out/mb-$backing.txt"
  echo "after MigrationBench $backing: $(load)" >> "$out/load.txt"
done
log "TransportBench, 2 GiB, two channels (load $(load))"
# shellcheck disable=SC2086
"$JAVA_HOME/bin/java" $java_flags -cp "$cp" io.pagewire.perf.e2e.TransportBench --uri 'tcp://127.0.0.1:0?channels=2' --bytes 2g \
  --runs "$runs" --rtt 200 --out "$out/transport" > "$out/transport.txt" 2>&1 || log "TransportBench failed: $out/transport.txt"
echo "after TransportBench: $(load)" >> "$out/load.txt"
for c in "${selected[@]}"; do
  IFS='|' read -r name qemu mb demo <<< "$c"
  [ -n "$demo" ] || continue
  for i in $(seq "$runs"); do
    for aot in on off; do
      log "demo $name run $i, AOT cache $aot (load $(load))"
      # shellcheck disable=SC2086
      PAGEWIRE_AOT=$aot ./pagewire demo --json $demo > "$out/demo-$name-aot-$aot-$i.json" 2> "$out/demo-$name-aot-$aot-$i.err" \
        || log "demo failed: $out/demo-$name-aot-$aot-$i.err"
    done
  done
done
echo "at the end: $(load)" >> "$out/load.txt"
python3 "$here/scripts/sitting-summary.py" "$out" "${selected[@]}" > "$out/summary.md" && cat "$out/summary.md"
log "results in $out"
