#!/usr/bin/env bash
# Configures, builds and installs one CMake (ament) package into a venv prefix, against the PyPI ROS 2 wheels
# there. Usage: cmake_into_venv.sh VENV SOURCE_DIR BUILD_DIR [extra cmake args...]
# The venv prefix is an ament prefix (environment.md section 4): the result imports without sourcing anything.
set -euo pipefail
venv=$(cd "$1" && pwd)
src=$2
dir=$3
shift 3
export AMENT_PREFIX_PATH="$venv" PATH="$venv/bin:$PATH"
log="$dir.log"
mkdir -p "$(dirname "$dir")"
if ! {
  cmake -S "$src" -B "$dir" -Wno-dev --log-level=WARNING \
    -DCMAKE_PREFIX_PATH="$venv" -DCMAKE_INSTALL_PREFIX="$venv" -DCMAKE_BUILD_TYPE=Release \
    -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF "$@" &&
    cmake --build "$dir" -j "$(nproc)" &&
    cmake --install "$dir"
} >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "building $src failed; full log: $log" >&2
  exit 1
fi
