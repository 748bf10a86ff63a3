#!/usr/bin/env bash
# Builds the libFuzzer targets (if needed) and runs each one for SECONDS on
# its seed corpus; fails on the first crash, leak, timeout or property
# violation. CI runs it with ~20 s per target.
#
#   fuzz/run-all.sh [SECONDS] [TARGET...]
#
# Environment: FUZZ_BUILD_DIR (default build-fuzz), CC (default clang),
# FUZZ_JOBS (parallel targets, default 1), FUZZ_WORK (where new corpus
# entries and crash files go; default $FUZZ_BUILD_DIR/fuzz-work).
# The repository's corpus is only read: new inputs go to FUZZ_WORK, so a CI
# run leaves the work tree clean. A crash file is named in the output; copy
# it to fuzz/regressions/<target>/ once fixed, and it replays in every build.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(template files time api config jsonquote stsxml)
build=${FUZZ_BUILD_DIR:-build-fuzz}
work=${FUZZ_WORK:-$build/fuzz-work}
jobs=${FUZZ_JOBS:-1}

max_len() {
  case $1 in
    template) echo 16384 ;;  # real templates are a few KiB; the parser is linear
    config) echo 8192 ;;     # a whole environment, ARGO_TEMPLATE included
    files | api | jsonquote) echo 4096 ;;
    stsxml) echo 8192 ;;     # an STS answer with a long session token
    time) echo 128 ;;        # one value
    *) echo 4096 ;;
  esac
}

CC=${CC:-clang} cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DARGOWAIT_FUZZ=ON \
  -DARGOWAIT_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target $(printf 'fuzz_%s ' "${targets[@]}") >/dev/null

run_one() {
  local t=$1 dict=()
  mkdir -p "$work/corpus/$t" "$work/crashes/$t"
  [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="fuzz/dict/$t.dict")
  echo "== fuzz_$t: ${seconds}s, -max_len=$(max_len "$t")"
  # git keeps no empty folder: a target without regressions has none.
  local inputs=("$work/corpus/$t" "fuzz/corpus/$t")
  [ -d "fuzz/regressions/$t" ] && inputs+=("fuzz/regressions/$t")
  # New inputs go to the first folder (work); the repo's corpus is read only.
  if ! ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1 \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      "$build/fuzz/fuzz_$t" "${dict[@]}" -max_total_time="$seconds" -max_len="$(max_len "$t")" \
      -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$work/crashes/$t/" \
      "${inputs[@]}" >"$work/fuzz_$t.log" 2>&1; then
    echo "!! fuzz_$t FAILED; crash files in $work/crashes/$t/"
    grep -E "property violated|ERROR|SUMMARY|runtime error|Test unit written" -A2 "$work/fuzz_$t.log" | head -40
    return 1
  fi
  grep -E "^stat::number_of_executed_units|^stat::average_exec_per_sec|^stat::peak_rss_mb" "$work/fuzz_$t.log" |
    tr '\n' ' '
  grep -Eo "cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*" "$work/fuzz_$t.log" | tail -1
}

mkdir -p "$work"
status=0
if [ "$jobs" -le 1 ]; then
  for t in "${targets[@]}"; do run_one "$t" || status=1; done
else
  pids=()
  for t in "${targets[@]}"; do
    run_one "$t" >"$work/summary_$t.txt" 2>&1 &
    pids+=($!)
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  done
  for i in "${!pids[@]}"; do wait "${pids[$i]}" || status=1; done
  for t in "${targets[@]}"; do cat "$work/summary_$t.txt"; done
fi
exit $status
