#!/usr/bin/env bash
# Checks (and on Debian/Ubuntu installs) what the setup needs from the system: cmake >= 3.21, a C compiler,
# Python venv support, and Mesa's EGL for offscreen rendering without a display or GPU (llvmpipe).
set -euo pipefail
missing=()
ldconfig_bin=$(command -v ldconfig || echo /sbin/ldconfig)
have_lib() { "$ldconfig_bin" -p 2>/dev/null | grep -q "$1"; }
have_lib 'libEGL.so.1' || missing+=(libegl1)
have_lib 'libEGL_mesa.so.0' || missing+=(libegl-mesa0)
have_lib 'libgbm.so.1' || missing+=(libgbm1)
ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1 || missing+=(libgl1-mesa-dri)
have_lib 'libGL.so.1' || missing+=(libgl1)
command -v cmake >/dev/null || missing+=(cmake)
command -v gcc >/dev/null || missing+=(build-essential)
python3 -c "import ensurepip" 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
  echo "system packages missing: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null; then
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
  else
    echo "install them with your package manager, then run make again" >&2; exit 1
  fi
fi
cmake_version=$(cmake --version | head -1 | awk '{print $3}')
if [ "$(printf '%s\n3.21\n' "$cmake_version" | sort -V | head -1)" != "3.21" ]; then
  echo "cmake >= 3.21 is needed to build the interfaces, found $cmake_version" >&2; exit 1
fi
