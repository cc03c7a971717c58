#!/usr/bin/env bash
# Runs the libFuzzer targets built by `make fuzz-build` (BUILD_DIR/fuzz/fuzz-NAME).
#   fuzz.sh run SECONDS BUILD_DIR [NAME...]   fuzz each target for SECONDS
#   fuzz.sh regress BUILD_DIR [NAME...]       replay seeds and kept reproducers once
# Every target runs even when one fails; the exit status is 1 if any did.
# `run` grows BUILD_DIR/corpus/NAME (seeded from tests/fuzz/corpus/NAME) and
# leaves a crashing input as BUILD_DIR/crashes/NAME-crash-<sha1>: to keep one
# as a regression test, fix the bug and copy the file to
# tests/fuzz/regressions/NAME/ under a name that says what it caught.
set -uo pipefail
cd "$(dirname "$0")/.."

mode=$1; shift
if [ "$mode" = run ]; then seconds=$1; shift; fi
build=$1; shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
        for f in tests/fuzz/fuzz-*.c; do t=${f#tests/fuzz/fuzz-}; targets+=("${t%.c}"); done
fi
# Scratch files (configs, state.json, unpacked trees) go to memory when it
# can: state_save and unpack fsync every write.
if [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi

failed=()
for t in "${targets[@]}"; do
        bin=$build/fuzz/fuzz-$t
        log=$build/fuzz-$mode-$t.log
        if [ "$mode" = run ]; then
                mkdir -p "$build/corpus/$t" "$build/crashes"
                "$bin" -max_total_time="$seconds" -timeout=30 -print_final_stats=1 \
                        -artifact_prefix="$build/crashes/$t-" "$build/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1
                rc=$?
                runs=$(sed -n 's/^stat::number_of_executed_units: //p' "$log")
                if [ $rc -eq 0 ]; then
                        echo "fuzz $t: ${runs:-?} executions in ${seconds}s"
                else
                        echo "fuzz $t: FAILED after ${runs:-?} executions (log: $log)"
                fi
        else
                mapfile -t files < <(find "tests/fuzz/corpus/$t" "tests/fuzz/regressions/$t" -type f 2>/dev/null | sort)
                if [ ${#files[@]} -eq 0 ]; then
                        echo "fuzz-regress $t: no inputs"
                        continue
                fi
                "$bin" -timeout=30 "${files[@]}" >"$log" 2>&1
                rc=$?
                echo "fuzz-regress $t: ${#files[@]} inputs$([ $rc -eq 0 ] && echo ", passed" || echo ", FAILED (log: $log)")"
        fi
        if [ $rc -ne 0 ]; then
                grep -E -m 20 'ERROR|SUMMARY|fuzz-|Running:|abort|runtime error|Test unit written' "$log" | tail -n 20
                failed+=("$t")
        fi
done
if [ ${#failed[@]} -gt 0 ]; then
        echo "fuzz $mode: failed: ${failed[*]}" >&2
        exit 1
fi
