#!/usr/bin/env bash
# Builds the MQTT decoder fuzz target with clang + libFuzzer + ASan/UBSan and runs it for
# ${FUZZ_SECONDS:-60} seconds on a corpus seeded from test/fuzz/corpus/mqtt. Exits non-zero when
# libFuzzer reports a crash, sanitizer error, leak or timeout; the reproducer is written to
# build-fuzz/artifacts/.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
seconds="${FUZZ_SECONDS:-60}"
corpus="$root/fuzz-corpus/mqtt"  # grows across runs; gitignored
artifacts="$build/artifacts"

launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTERN_FUZZ=ON "${launcher[@]}" >/dev/null
cmake --build "$build" --target mqtt_decoder_fuzz

mkdir -p "$corpus" "$artifacts"
cp -n "$root"/test/fuzz/corpus/mqtt/* "$corpus"/

# halt_on_error makes a UBSan report a finding even if a check was built recoverable.
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
status=0
"$build/test/fuzz/mqtt_decoder_fuzz" -max_total_time="$seconds" -print_final_stats=1 \
  -artifact_prefix="$artifacts/" "$corpus" || status=$?
if [ "$status" -ne 0 ]; then
  echo "fuzz: FINDING (exit $status); reproducers in $artifacts/" >&2
  exit "$status"
fi
echo "fuzz: clean after ${seconds}s"
