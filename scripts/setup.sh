#!/usr/bin/env bash
# Installs the Debian 12 packages llmtrain builds and tests with. Idempotent; needs root (or sudo).
# The CUDA toolkit is not installed here: when nvcc is on PATH the build adds the CUDA backend.
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build pkg-config git
  nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev catch2
  zlib1g-dev libzstd-dev libsentencepiece-dev sentencepiece libsnappy-dev
  libgloo-dev python3 python3-numpy
)
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi
