#!/usr/bin/env bash
# Builds Patrol's fuzz targets (fuzz/, docs/fuzzing.md) and runs each for a
# bounded time, one after another.
#
#   scripts/fuzz.sh                   # every target, 60 s each
#   scripts/fuzz.sh frame pam         # only these targets
#   FUZZ_SECONDS=300 scripts/fuzz.sh  # longer runs
#
# Environment:
#   FUZZ_SECONDS   time per target (default 60)
#   FUZZ_RSS_MB    memory limit per process; over it is a crash (default 2048)
#   FUZZ_MAX_LEN   largest input tried, in bytes (default 65536)
#   FUZZ_TIMEOUT   seconds one input may take before it counts as a hang (default 10)
#   FUZZ_JOBS      parallel fuzzing processes per target (default 1)
#
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets a stable toolchain
# take them. Builds go to fuzz/target, so the workspace's own target
# directory is never rebuilt with sanitizer flags. The working corpus is
# fuzz/corpus/<target>/ (not checked in); the hand-written seeds in
# fuzz/seeds/<target>/ are read too. Crashes land in fuzz/artifacts/<target>/.
# Exits non-zero if any target found a crash, a hang or a memory blow-up.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-60}"
rss_mb="${FUZZ_RSS_MB:-2048}"
max_len="${FUZZ_MAX_LEN:-65536}"
timeout="${FUZZ_TIMEOUT:-10}"
jobs="${FUZZ_JOBS:-1}"

export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_FUZZ:-$PWD/target}"

if ! command -v cargo-fuzz >/dev/null; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 2
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

# Release code with debug assertions: overflow checks catch arithmetic a
# hostile input can push over, as the unit tests would.
cargo fuzz build -O --debug-assertions

parallel=()
if [ "$jobs" -gt 1 ]; then
    parallel=(-jobs="$jobs" -workers="$jobs")
fi

failed=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "seeds/$target"
    echo "=== $target: ${seconds}s"
    if ! cargo fuzz run -O --debug-assertions "$target" \
        "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" \
        -rss_limit_mb="$rss_mb" \
        -malloc_limit_mb="$rss_mb" \
        -max_len="$max_len" \
        -timeout="$timeout" \
        "${parallel[@]}" \
        -print_final_stats=1; then
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "targets with findings (see fuzz/artifacts/): ${failed[*]}" >&2
    exit 1
fi
echo "no findings in: ${targets[*]}"
