#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/) with clang under ASan + UBSan,
# replays the kept regression inputs, then fuzzes each target for a bounded
# time from a seed corpus of the golden files scipy wrote. Fails on any
# crash, sanitizer report or leak; prints executions and coverage.
#   scripts/fuzz.sh [SECONDS per target, default 60]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
build=build-fuzz
CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DRESHARD_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$build" --target fuzz_npz fuzz_zip_directory >/dev/null
work="$(mktemp -d /tmp/reshard-fuzz-XXXXXX)"
trap 'rm -rf "$work"' EXIT
for target in fuzz_npz fuzz_zip_directory; do
  corpus="$work/$target"
  mkdir -p "$corpus"
  cp tests/golden/*.npz "$corpus/"
  regressions=(tests/fuzz/regressions/*)
  if [ -e "${regressions[0]}" ]; then
    "$build/bin/$target" -rss_limit_mb=2048 "${regressions[@]}" >"$work/$target.replay.log" 2>&1 ||
      { cat "$work/$target.replay.log"; echo "fuzz: $target fails on a kept regression input" >&2; exit 1; }
  fi
  # A failing input is kept in $build/artifacts/; add it to
  # tests/fuzz/regressions/ once fixed, so every run replays it.
  mkdir -p "$work/artifacts"
  if ! (cd "$work" && "$OLDPWD/$build/bin/$target" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 \
          -timeout=20 -artifact_prefix="$work/artifacts/" -print_final_stats=1 "$corpus" >"$work/$target.log" 2>&1); then
    tail -n 40 "$work/$target.log"
    mkdir -p "$build/artifacts"
    cp "$work"/artifacts/* "$build/artifacts/" 2>/dev/null || true
    echo "fuzz: $target found a failing input, kept in $build/artifacts/: $(ls "$work/artifacts")" >&2
    exit 1
  fi
  done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$work/$target.log" | tail -n 1)"
  echo "fuzz: $target ${seconds}s: ${done_line}"
done
