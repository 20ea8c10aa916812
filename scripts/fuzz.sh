#!/usr/bin/env bash
# Builds libFuzzer targets with clang + ASan/UBSan and runs each for ${FUZZ_SECONDS:-60} seconds.
#   scripts/fuzz.sh                      # every target
#   scripts/fuzz.sh tracker_gt06_fuzz    # one or more named targets
# Corpora grow in fuzz-corpus/<target> (gitignored), seeded from test/fuzz/corpus/<seed dir>.
# Exits non-zero on a finding; the reproducer is written to build-fuzz/artifacts/.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
seconds="${FUZZ_SECONDS:-60}"
artifacts="$build/artifacts"
all_targets=(mqtt_decoder_fuzz)
for p in gt06 teltonika h02 tk103 gps103 gl200 meitrack ruptela; do
  all_targets+=("tracker_${p}_fuzz")
done
all_targets+=(proxy_protocol_fuzz osmand_fuzz)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")

launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTERN_FUZZ=ON "${launcher[@]}" >/dev/null
cmake --build "$build" --target "${targets[@]}"

# halt_on_error makes a UBSan report a finding even if a check was built recoverable.
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
mkdir -p "$artifacts"
for target in "${targets[@]}"; do
  seed="${target%_fuzz}"
  [ "$target" = mqtt_decoder_fuzz ] && seed=mqtt
  seed="${seed#tracker_}"
  corpus="$root/fuzz-corpus/$target"
  mkdir -p "$corpus"
  if [ -d "$root/test/fuzz/corpus/$seed" ]; then
    cp -n "$root/test/fuzz/corpus/$seed"/* "$corpus"/ 2>/dev/null || true
  fi
  status=0
  "$build/test/fuzz/$target" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$artifacts/$target-" "$corpus" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "fuzz: $target: FINDING (exit $status); reproducers in $artifacts/" >&2
    exit "$status"
  fi
  echo "fuzz: $target clean after ${seconds}s"
done
