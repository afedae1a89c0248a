#!/usr/bin/env bash
# Fuzzes the parsers that take untrusted bytes (Fuzz/Harnesses) with libFuzzer and the address
# sanitizer, starting from the committed seeds in Fuzz/corpus/<harness>/:
#   bash scripts/fuzz.sh                    every harness, 30 s each
#   bash scripts/fuzz.sh csv 3600           one harness for an hour
#   bash scripts/fuzz.sh all 600            every harness, 10 minutes each
# An input is a finding when it crashes, trips the sanitizer, runs over 1 s (inputs are at most
# 64 KiB) or makes the process use over 2 GiB; libFuzzer then writes it to
# .build-fuzz/findings/<harness>/ and this script exits 1. Replay one in a plain build with
# `swift run sluice-fuzz HARNESS FILE`, fix the bug, and commit the input to
# Fuzz/regressions/<harness>/ (the tests replay every file there).
# New inputs the fuzzer finds go to .build-fuzz/corpus/<harness>/ (not committed); FUZZ_ARGS adds
# libFuzzer flags. Each harness's last lines (executions, coverage) go to
# .build-fuzz/logs/<harness>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
install_deps
harness=${1:-all}
seconds=${2:-30}
scratch=.build-fuzz
# libFuzzer without its main (sluice-fuzz has its own), from the toolchain's clang runtime.
rt=$(ls -d "$(dirname "$(dirname "$(readlink -f "$(command -v swiftc)")")")"/lib/clang/*/lib/linux | head -1)
[ -f "$rt/libclang_rt.fuzzer_no_main-x86_64.a" ] || { echo "this Swift toolchain has no libFuzzer runtime in $rt" >&2; exit 2; }
coverage=edge,indirect-calls,trace-cmp,inline-8bit-counters,pc-table
echo "building sluice-fuzz (release, libFuzzer coverage, address sanitizer) in $scratch/"
swift build -c release --scratch-path "$scratch" --product sluice-fuzz \
    -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=$coverage -Xswiftc -DSLUICE_FUZZ \
    -Xcxx -fsanitize=address -Xcxx -fsanitize-coverage=inline-8bit-counters,pc-table,trace-cmp \
    -Xlinker "$rt/libclang_rt.fuzzer_no_main-x86_64.a" -Xlinker -lstdc++
bin=$scratch/release/sluice-fuzz
if [ "$harness" = all ]; then
    harnesses=$("$bin" --list | cut -f1)
else
    "$bin" --list | cut -f1 | grep -qx "$harness" || { echo "no harness '$harness': $("$bin" --list | cut -f1 | tr '\n' ' ')" >&2; exit 2; }
    harnesses=$harness
fi
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}
failed=()
for h in $harnesses; do
    mkdir -p "$scratch/corpus/$h" "$scratch/findings/$h" "$scratch/logs" "Fuzz/corpus/$h"
    log=$scratch/logs/$h.log
    echo "== $h: ${seconds} s"
    # shellcheck disable=SC2086
    if SLUICE_FUZZ_HARNESS=$h "$bin" "$scratch/corpus/$h" "Fuzz/corpus/$h" \
        -max_len=65536 -timeout=1 -rss_limit_mb=2048 -malloc_limit_mb=2048 -max_total_time="$seconds" \
        -print_final_stats=1 -artifact_prefix="$scratch/findings/$h/" ${FUZZ_ARGS:-} >"$log" 2>&1; then
        grep -E "^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|^#[0-9]+ +DONE" "$log" | tr '\n' ' ' | sed 's/stat:://g'
        echo
    else
        echo "!! $h: a finding (see $log and $scratch/findings/$h/)"
        grep -E "ERROR|Fatal error|fuzz finding|SUMMARY|Test unit written" "$log" | head -5
        failed+=("$h")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "findings in: ${failed[*]}" >&2
    exit 1
fi
