#!/usr/bin/env bash
# Builds the ROS 2 interfaces into a venv with the PyPI rosidl toolchain (called by `make setup`):
# the test-only vision_msgs and tf2_msgs, then attn6d_ros's own msg/. Usage: build_interfaces.sh VENV BUILD_DIR
set -euo pipefail
venv=$(cd "$1" && pwd)
build=$2
root=$(cd "$(dirname "$0")/.." && pwd)
py="$venv/bin/python"
export AMENT_PREFIX_PATH="$venv" PATH="$venv/bin:$PATH"

build_one() {  # src, build dir, extra cmake args...
  local src=$1 dir=$2; shift 2
  cmake -S "$src" -B "$dir" -Wno-dev --log-level=WARNING \
    -DCMAKE_PREFIX_PATH="$venv" -DCMAKE_INSTALL_PREFIX="$venv" \
    -DPython3_EXECUTABLE="$py" -DBUILD_TESTING=OFF "$@" >/dev/null
  cmake --build "$dir" -j "$(nproc)" >/dev/null
  cmake --install "$dir" >/dev/null
}

for pkg in vision_msgs tf2_msgs; do
  echo "building test-only interfaces: $pkg"
  build_one "$root/test/interfaces/$pkg" "$build/test_interfaces/$pkg"
done

# Our own interfaces go to a directory of their own, put on sys.path *after* the checkout by a .pth file:
# the checkout's attn6d_ros package is the one imported, and its __init__ extends __path__ to find msg/.
echo "building attn6d_ros interfaces"
iface_dir=lib/attn6d_ros_interfaces
build_one "$root" "$build/attn6d_ros" -DATTN6D_INTERFACES_ONLY=ON -DPYTHON_INSTALL_DIR="$iface_dir"
# rosidl also writes an attn6d_ros-*.egg-info there; pip would take it for the editable attn6d_ros
# distribution and delete the generated files when it (re)installs that. Nothing at run time reads it.
rm -rf "$venv/$iface_dir"/attn6d_ros-*.egg-info
site=$("$py" -c "import sysconfig; print(sysconfig.get_path('purelib'))")
echo "$venv/$iface_dir" > "$site/zz_attn6d_ros_interfaces.pth"
