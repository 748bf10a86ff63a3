#!/usr/bin/env bash
# Debian packages needed to build and test argowait (Debian 12 bookworm).
#   scripts/install-deps.sh          build + test packages
#   scripts/install-deps.sh --build  only what the build needs (Dockerfile)
#   scripts/install-deps.sh --fuzz   build + test + clang and libFuzzer (fuzz/run-all.sh)
set -euo pipefail
build_pkgs=(build-essential cmake pkg-config libuv1-dev libcurl4-openssl-dev libcjson-dev libyaml-dev
            libarchive-dev ca-certificates)
test_pkgs=(libcmocka-dev openssl python3 python3-yaml strace faketime)
fuzz_pkgs=(clang libclang-rt-14-dev) # bookworm's clang is 14; libFuzzer is in libclang-rt
pkgs=("${build_pkgs[@]}")
[ "${1:-}" = "--build" ] || pkgs+=("${test_pkgs[@]}")
[ "${1:-}" != "--fuzz" ] || pkgs+=("${fuzz_pkgs[@]}")
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
for attempt in 1 2 3; do
  if $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      --no-install-recommends "${missing[@]}"; then
    exit 0
  fi
  echo "apt-get failed (attempt $attempt); retrying" >&2
  sleep $((attempt * 5))
done
exit 1
