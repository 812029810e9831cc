#!/usr/bin/env bash
# Installs the ROS 2 Jazzy sources of ../shared/upstream into a venv, for tests and CI only (`make setup` calls it
# when that folder exists), so that the suite runs the node against the real launch, launch_ros, ros2cli,
# message_filters, tf2_ros and cv_bridge, as in a user's ROS 2 workspace. Nothing is copied into the repository.
# Usage: install_upstream.sh VENV BUILD_DIR UPSTREAM_DIR
# Writes VENV/.attn6d-upstream (JSON: source, installed packages, skipped ones with the reason); the tests read
# it to tell "not installed here" (skip) from "installed but broken" (fail).
set -euo pipefail
venv=$(cd "$1" && pwd)
build=$2
upstream=$(cd "$3" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
py="$venv/bin/python"
site=$("$py" -c "import sysconfig; print(sysconfig.get_path('purelib'))")
into_venv() { "$root/scripts/cmake_into_venv.sh" "$venv" "$@"; }
inject="-DCMAKE_PROJECT_INCLUDE=$root/cmake/upstream_project_include.cmake"
installed=()
skipped=()

echo "upstream ROS 2 packages from $upstream"
mkdir -p "$build/upstream"
pip_log="$build/upstream/pip.log"
pip_install() {  # quiet unless it fails: setuptools warns about every upstream setup.py
  "$py" -m pip install "$@" >"$pip_log" 2>&1 || { tail -n 40 "$pip_log" >&2; exit 1; }
}
pip_install -r "$root/requirements/upstream.txt"

# Pure-Python packages. pip builds in the source tree, and ../shared may be read-only: build from a copy.
pure=(launch/launch launch/launch_xml launch/launch_yaml launch_ros/launch_ros launch_ros/ros2launch
  ros2cli/ros2cli ros2cli/ros2pkg ros2cli/ros2run ros2cli/ros2node ros2cli/ros2topic ros2cli/ros2param
  ros2cli/ros2service geometry2/tf2_ros_py)
copies="$build/upstream/src"
rm -rf "$copies"
mkdir -p "$copies"
paths=()
for p in "${pure[@]}"; do
  cp -r "$upstream/$p" "$copies/"
  paths+=("$copies/$(basename "$p")")
  installed+=("$(basename "$p")")
done
pip_install --no-deps --no-build-isolation "${paths[@]}"

# message_filters: only its Python half (the C++ half needs rclcpp, which PyPI lacks; Python users never load
# it). Its setup.py is a ROS 1 leftover, so install the package directory as ament_cmake_python would.
rm -rf "$site/message_filters"
cp -r "$upstream/message_filters/src/message_filters" "$site/message_filters"
mkdir -p "$venv/share/ament_index/resource_index/packages" "$venv/share/message_filters"
touch "$venv/share/ament_index/resource_index/packages/message_filters"
cp "$upstream/message_filters/package.xml" "$venv/share/message_filters/"
installed+=(message_filters)

# Interfaces and C++ (+ Python extension) packages, built like our own msgs.
for p in rcl_interfaces/composition_interfaces geometry2/tf2 geometry2/tf2_py; do
  echo "building $(basename "$p")"
  into_venv "$upstream/$p" "$build/upstream/$(basename "$p")" "$inject"
  installed+=("$(basename "$p")")
done

# cv_bridge: C++ with OpenCV and Boost.Python from the system (Debian: libopencv-dev, libboost-python-dev).
pyver=$("$py" -c "import sys; print(f'{sys.version_info[0]}{sys.version_info[1]}')")
missing=()
have() { compgen -G "$1" >/dev/null; }
have "/usr/lib/*/cmake/opencv4/OpenCVConfig.cmake" || have "/usr/lib/cmake/opencv4/OpenCVConfig.cmake" ||
  missing+=(libopencv-dev)
have "/usr/lib/*/libboost_python$pyver.so" || have "/usr/lib/libboost_python$pyver.so" ||
  missing+=(libboost-python-dev)
if ((${#missing[@]})); then
  reason="cv_bridge was not built: system packages missing: ${missing[*]} (Debian/Ubuntu: apt-get install ${missing[*]}; then make setup again)"
  echo "$reason"
  skipped+=("cv_bridge=$reason")
else
  echo "building cv_bridge"
  into_venv "$root/cmake/upstream/cv_bridge" "$build/upstream/cv_bridge" \
    "-DCV_BRIDGE_SOURCE_DIR=$upstream/vision_opencv/cv_bridge"
  touch "$venv/share/ament_index/resource_index/packages/cv_bridge"
  installed+=(cv_bridge)
fi

"$py" - "$venv/.attn6d-upstream" "$upstream" "${installed[*]}" "${skipped[@]}" <<'PY'
import json
import sys

path, source, installed, *skipped = sys.argv[1:]
record = {
    "source": source,
    "installed": installed.split(),
    "skipped": dict(entry.split("=", 1) for entry in skipped),
}
with open(path, "w") as f:
    json.dump(record, f, indent=1)
PY
