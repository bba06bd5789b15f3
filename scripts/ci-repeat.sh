#!/usr/bin/env bash
# Runs .ci/run N times, each on a fresh clone of a commit (default: HEAD of this checkout), and
# reports every failing test by name. A flaky test shows up here before it reaches CI.
#
#   scripts/ci-repeat.sh N [--random-order] [--commit REV] [--keep]
#
#   --random-order   run test classes and methods in a random order (JUnit's Random orderers; the
#                    seed is printed in the log), to find tests that depend on the order they run in
#   --commit REV     test REV instead of HEAD (must be committed: a clone sees only commits)
#   --keep           keep each clone and its log (default: only the logs of failed runs are kept)
#
# Logs go to target/ci-repeat/<date>/run-K.log. Exit status: 0 when every run passed.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-}
case "$n" in ''|*[!0-9]*) sed -n '2,13p' "$0"; exit 2 ;; esac
shift
random=false; commit=HEAD; keep=false
while [ $# -gt 0 ]; do
  case "$1" in
    --random-order) random=true ;;
    --commit) commit=${2:?--commit needs a revision}; shift ;;
    --keep) keep=true ;;
    *) echo "ci-repeat: unknown option '$1'" >&2; sed -n '2,13p' "$0"; exit 2 ;;
  esac
  shift
done
rev=$(git -C "$here" rev-parse --verify "$commit^{commit}") || { echo "ci-repeat: no such commit '$commit'" >&2; exit 2; }
out="$here/target/ci-repeat/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
args=()
if $random; then
  args=(-Djunit.jupiter.testclass.order.default='org.junit.jupiter.api.ClassOrderer$Random'
        -Djunit.jupiter.testmethod.order.default='org.junit.jupiter.api.MethodOrderer$Random')
fi
thp=$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo unknown)
echo "ci-repeat: $n run(s) of .ci/run on fresh clones of ${rev:0:12}; THP: $thp; random order: $random; logs in $out"
failed=0
for k in $(seq 1 "$n"); do
  dir=$(mktemp -d "${TMPDIR:-/tmp}/pagewire-ci-XXXXXX")
  git clone -q --no-hardlinks "$here" "$dir/pagewire" && git -C "$dir/pagewire" checkout -q "$rev" || { echo "ci-repeat: clone failed" >&2; exit 1; }
  log="$out/run-$k.log"
  start=$(date +%s)
  (cd "$dir/pagewire" && .ci/run "${args[@]}") > "$log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  if [ "$rc" -eq 0 ]; then
    echo "run $k: passed in ${secs} s"
    $keep || rm -f "$log"
  else
    failed=$((failed + 1))
    echo "run $k: FAILED (exit $rc) in ${secs} s; log $log"
    # Failing tests by name, from surefire's summary lines and its reports.
    grep -hE '^\[ERROR\] +[A-Za-z0-9_.$]+[.#:][A-Za-z0-9_$]+|Tests run:.*FAILURE!|<<< (FAILURE|ERROR)!|Crashed tests:|^\[ERROR\] [a-z]+\.[A-Za-z0-9_.$]+$' "$log" \
      | sed 's/^/    /' | sort -u | head -40
    grep -h "seed" "$log" | sort -u | head -3 | sed 's/^/    /'
  fi
  if $keep; then echo "    clone kept: $dir/pagewire"; else rm -rf "$dir"; fi
done
echo "ci-repeat: $((n - failed)) of $n passed"
[ "$failed" -eq 0 ]
