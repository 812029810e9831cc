#!/usr/bin/env bash
# Builds the ROS 2 interfaces into a venv with the PyPI rosidl toolchain (called by `make setup`): vision_msgs
# and tf2_msgs, then attn6d_ros's own msg/. Usage: build_interfaces.sh VENV BUILD_DIR [UPSTREAM_DIR]
# vision_msgs and tf2_msgs come from UPSTREAM_DIR (../shared/upstream: the real packages, tests and CI) when it
# is given, else from the test-only copies in test/interfaces (field lists identical to upstream).
set -euo pipefail
venv=$(cd "$1" && pwd)
build=$2
upstream=${3:-}
root=$(cd "$(dirname "$0")/.." && pwd)
py="$venv/bin/python"
into_venv() { "$root/scripts/cmake_into_venv.sh" "$venv" "$@"; }

if [ -n "$upstream" ]; then
  inject="-DCMAKE_PROJECT_INCLUDE=$root/cmake/upstream_project_include.cmake"
  for p in vision_msgs/vision_msgs geometry2/tf2_msgs; do
    echo "building upstream interfaces: $(basename "$p")"
    into_venv "$upstream/$p" "$build/upstream/$(basename "$p")" "$inject"
  done
else
  for pkg in vision_msgs tf2_msgs; do
    echo "building test-only interfaces: $pkg"
    into_venv "$root/test/interfaces/$pkg" "$build/test_interfaces/$pkg"
  done
fi

# Our own interfaces go to a directory of their own, put on sys.path *after* the checkout by a .pth file:
# the checkout's attn6d_ros package is the one imported, and its __init__ extends __path__ to find msg/.
echo "building attn6d_ros interfaces"
iface_dir=lib/attn6d_ros_interfaces
into_venv "$root" "$build/attn6d_ros" -DATTN6D_INTERFACES_ONLY=ON -DPYTHON_INSTALL_DIR="$iface_dir"
# rosidl also writes an attn6d_ros-*.egg-info there; pip would take it for the editable attn6d_ros
# distribution and delete the generated files when it (re)installs that. Nothing at run time reads it.
rm -rf "$venv/$iface_dir"/attn6d_ros-*.egg-info
site=$("$py" -c "import sysconfig; print(sysconfig.get_path('purelib'))")
echo "$venv/$iface_dir" > "$site/zz_attn6d_ros_interfaces.pth"
