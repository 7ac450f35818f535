#!/usr/bin/env bash
# Formatting check (fast; test.sh runs it) and, with --tidy, clang-tidy over
# the library and app (slow; needs build/compile_commands.json).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cpp' '*.hpp')
clang-format --dry-run --Werror "${files[@]}"
echo "lint: clang-format clean (${#files[@]} files)"
if [ "${1:-}" = "--tidy" ]; then
  mapfile -t sources < <(git ls-files 'src/*.cpp' 'apps/*.cpp')
  clang-tidy -p build --quiet --extra-arg=-Wno-unknown-warning-option "${sources[@]}"
fi
