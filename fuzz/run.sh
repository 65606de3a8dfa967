#!/usr/bin/env bash
# Builds the cargo-fuzz targets and runs each for FUZZ_SECONDS (default 60), one after another on
# one core; exits non-zero at the first crash, timeout or out-of-memory. Usage: fuzz/run.sh [TARGET…]
#
# The toolchain is stable Rust: RUSTC_BOOTSTRAP=1 lets it take the -Z flags cargo fuzz passes.
# `--sanitizer none`: the code is safe Rust, so what we look for is panics (debug assertions and
# overflow checks are on: `-a`), hangs, out-of-memory and stack overflows, and without ASan the
# targets run several times faster. The growing corpus lives in fuzz/work/ (gitignored) and
# starts from the committed seeds in fuzz/corpus/; crashes land in fuzz/artifacts/<target>/.
# Each run appends `target executions exec/s seconds status end-time commit` to
# fuzz/record.tsv; `fuzz/summary.sh > fuzz/RESULTS.md` turns that record into the summary
# table (RESULTS.md was made that way: reproduce it with runs like
# `nice -n 19 make fuzz FUZZ_SECONDS=600 FUZZ_TARGETS=msgpack` until every target has 10M).
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1 CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
TARGET_DIR="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-../target}/fuzz}"
FLAGS=(--sanitizer none -a --target-dir "$TARGET_DIR")
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# -timeout=60: an input that takes longer is a hang. (A 10 s limit reported a "timeout" for a
# template input that renders in 0.35 s, a Go-exact `printf "%.5555551e"` of 5.5 MB, when the
# nice-19 fuzzer got ~1.5 % of a core beside a QEMU guest and a compiler.)
#
# Largest input per target: the protocol and config targets need room for real messages; the
# grammar targets are fastest with short inputs. msgpack: 1 KiB holds every marker form and
# nesting past the decoder's depth limit (512), and runs 1.55 times as fast as 4 KiB (8.8k vs
# 5.7k executions per CPU second, 100k runs from the seeds; the codec is linear, most of the
# time goes to the coverage callbacks of its per-byte scans).
max_len() {
    case "$1" in
        duration_size) echo 64 ;;
        http_path | gob_exit_status) echo 512 ;;
        boot_command) echo 256 ;;
        checksum | spec_encode | msgpack) echo 1024 ;;
        template) echo 2048 ;;
        *) echo 4096 ;;
    esac
}

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
# FUZZ_BUILD=0: run the binaries already in the target directory (while another build runs there).
[ "${FUZZ_BUILD:-1}" = 0 ] || cargo fuzz build "${FLAGS[@]}"
mkdir -p work
for t in "${targets[@]}"; do
    mkdir -p "work/corpus/$t" "artifacts/$t"
    args=(-max_total_time="$FUZZ_SECONDS" -max_len="$(max_len "$t")" -timeout=60 -rss_limit_mb=2048
        -artifact_prefix="artifacts/$t/" -print_final_stats=1)
    [ -f "dict/$t.dict" ] && args+=(-dict="dict/$t.dict")
    echo "== $t: ${FUZZ_SECONDS}s"
    log="work/$t.log"
    status=0
    # The binary `cargo fuzz build` made (what `cargo fuzz run` would start, without its rebuild check).
    "$TARGET_DIR/$TRIPLE/release/$t" "${args[@]}" "work/corpus/$t" "corpus/$t" >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "${execs:-0}" "${rate:-0}" "$FUZZ_SECONDS" "$status" \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" >>record.tsv
    echo "   ${execs:-0} executions, ${rate:-0}/s"
    if [ "$status" -ne 0 ]; then
        grep -a -E "panicked|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" | head -20 >&2
        echo "$t: crash (log: fuzz/$log, input in fuzz/artifacts/$t/)" >&2
        exit 1
    fi
done
