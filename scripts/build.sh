#!/usr/bin/env bash
# The one build command, shared by CI, the Dockerfile and the README.
#   scripts/build.sh [BUILD_DIR] [extra cmake arguments...]
# Warnings are errors. Pass -DARGOWAIT_SANITIZE=ON for the ASan+UBSan build.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DARGOWAIT_WERROR=ON "$@"
cmake --build "$dir" -j"$(nproc)"
