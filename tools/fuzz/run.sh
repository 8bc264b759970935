#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each and prints one line per target:
# executions, seconds (wall, and CPU of the fuzzer and the reader processes it started), executions
# per wall second, corpus size, coverage (libFuzzer's cov: edges and ft: features), findings (crash,
# timeout, out-of-memory inputs; an input over 20 s of CPU time is a crash, see Harness.swift).
# Usage: tools/fuzz/run.sh SECONDS [TARGET...]
#   BISSL_FUZZ_RUNS  stop a target earlier, after this many executions (a campaign: 1000000)
#   BISSL_FUZZ_JOBS  how many targets run at the same time (default 1)
#   BISSL_FUZZ_BIN  the fuzz binary (default: build it with tools/fuzz/build.sh)
#   BISSL_FUZZ_HELPER  the bissl binary the h5 target starts as its sandboxed reader
#                      (default .build/release/bissl; the h5 target is skipped when it is missing)
#   BISSL_FUZZ_TIMEOUT  libFuzzer's -timeout, wall seconds per input (default 120): only a backstop
#                       for an input that waits without using CPU; a campaign on a machine where
#                       the fuzzers get paused (SIGSTOP) sets it above the longest pause
# Corpora grow in .build-fuzz/corpus/TARGET (seeded by tools/fuzz/make_seeds.py); crash, timeout and
# out-of-memory inputs are written to .build-fuzz/findings/TARGET. Exits non-zero when any target
# has a finding.
set -uo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${1:?usage: tools/fuzz/run.sh SECONDS [TARGET...]}
shift
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(pickle zip pth safetensors npy npz h5 h5message idx cifar png jpeg provenance uri)
BIN=${BISSL_FUZZ_BIN:-$(bash tools/fuzz/build.sh)} || exit 1
HELPER=${BISSL_FUZZ_HELPER:-$PWD/.build/release/bissl}
JOBS=${BISSL_FUZZ_JOBS:-1}
python3 tools/fuzz/make_seeds.py .build-fuzz/seeds >/dev/null || exit 1
# Sets CPU to the CPU seconds (user + system) of the finished children of this shell, from `times`
# into FILE (run in the target's own shell: `times` in a command substitution counts nothing).
children_cpu() {
  times >"$1"
  CPU=$(tail -1 "$1" | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, p, "m"); s += p[1] * 60 + p[2] } printf "%.0f", s }')
}
# Fuzzes one target and prints its line; fails when the target has a finding.
run_target() {
  local t=$1
  if [ "$t" = h5 ] && [ ! -x "$HELPER" ]; then echo "h5: skipped (no bissl binary at $HELPER)"; return 0; fi
  local corpus=.build-fuzz/corpus/$t findings=.build-fuzz/findings/$t log=.build-fuzz/logs/$t.log
  mkdir -p "$corpus" "$findings" .build-fuzz/logs
  local start; start=$(date +%s); children_cpu "$log.times"; local cpu0=$CPU
  # -rss_limit_mb: the readers' own limits are far below it; -timeout: wall seconds per input.
  # SWIFT_BACKTRACE=enable=no: a Swift trap goes to libFuzzer's handler (its report and the input
  # saved) instead of the Swift runtime's backtracer, which ASan reports for reading other stacks.
  BISSL_FUZZ_TARGET=$t BISSL_FUZZ_HELPER=$HELPER SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=0 \
    "$BIN" "$corpus" ".build-fuzz/seeds/$t" -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout="${BISSL_FUZZ_TIMEOUT:-120}" \
    -rss_limit_mb=3072 -malloc_limit_mb=3072 -print_final_stats=1 -artifact_prefix="$findings/" \
    ${BISSL_FUZZ_RUNS:+-runs=$BISSL_FUZZ_RUNS} >"$log" 2>&1
  local rc=$? end; end=$(date +%s); children_cpu "$log.times"; local cpu=$((CPU - cpu0))
  local execs cov ft size found kinds seconds rate
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  # libFuzzer's corpus in memory (seeds and units it kept), else the files it wrote.
  size=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$'); size=${size:-$(ls "$corpus" | wc -l)}
  # libFuzzer also saves inputs slower than 10 s of wall time as slow-unit-*: kept for a look, not
  # findings (the hang criterion is CPU time; the h5 target's reader process may take its 20 s).
  kinds=$(for k in crash timeout oom; do ls "$findings" | grep -c "^$k-"; done | paste -sd/)
  found=$(ls "$findings" | grep -c -E '^(crash|timeout|oom)-')
  seconds=$((end - start))
  rate=$([ -n "$execs" ] && [ "$seconds" -gt 0 ] && echo $((execs / seconds)) || echo '?')
  printf '%-12s %10s %7s %7s %8s %7s %6s %6s %s\n' "$t" "${execs:-?}" "$seconds" "$cpu" "$rate" "$size" "${cov:-?}" "${ft:-?}" "$kinds"
  if [ "$rc" -ne 0 ] || [ "$found" -ne 0 ]; then echo "  $t: see $log and $findings" >&2; return 1; fi
}
printf '%-12s %10s %7s %7s %8s %7s %6s %6s %s\n' target executions seconds cpu-s exec/s corpus cov ft crash/timeout/oom
failed=0 running=0
for t in "${TARGETS[@]}"; do
  run_target "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n || failed=1; running=$((running - 1)); fi
done
while [ "$running" -gt 0 ]; do wait -n || failed=1; running=$((running - 1)); done
exit $failed
