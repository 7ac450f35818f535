#!/usr/bin/env bash
# Installs what building, testing and the demo need, from Debian's packages.
# Idempotent: does nothing when everything is already there.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git clang-format clang-tidy clang libclang-rt-14-dev
  openmpi-bin libopenmpi-dev libhdf5-openmpi-dev
  libboost-program-options-dev libcurl4-openssl-dev
  libgtest-dev libdeflate-dev libisal-dev nlohmann-json3-dev
  python3-numpy python3-scipy python3-pytest python3-pip python3-setuptools python3-tqdm
  python3-cryptography  # the fake Google token endpoint verifies RS256 JWTs with it
  python3-anndata python3-h5py  # .h5ad tests read and write with the real clients
  time libssl-dev
  prometheus prometheus-pushgateway
  slurm-wlm munge
)

# node and npm run the S3 test servers (tests/s3); the machine image usually
# has them, Debian's packages otherwise.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then PACKAGES+=(nodejs npm); fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
