#!/usr/bin/env bash
# Makes sure an existing venv holds the ROS 2 distribution this run asks for (`make ... ROS_DISTRO=...`): the
# ros-* wheels of two distributions share package names, so one venv holds one distribution.
# Usage: check_venv_distro.sh VENV DISTRO. Records DISTRO in VENV/.attn6d-ros-distro.
set -euo pipefail
venv=$1
want=$2
marker="$venv/.attn6d-ros-distro"
[ -x "$venv/bin/python" ] || exit 0
if [ -f "$marker" ]; then
  have=$(cat "$marker")
else
  # A venv made before distributions were selectable: tell its distribution by rclpy's major version.
  have=$("$venv/bin/python" -c "
import importlib.metadata as m
try:
    major = m.version('ros-rclpy').split('.')[0]
except m.PackageNotFoundError:
    major = ''
print({'7': 'jazzy', '9': 'kilted'}.get(major, ''))" 2>/dev/null || true)
fi
if [ -n "$have" ] && [ "$have" != "$want" ]; then
  echo "$venv holds ROS 2 $have, but this run asks for ROS_DISTRO=$want." >&2
  echo "Use another venv (VENV=.venv-$want), pass ROS_DISTRO=$have, or remove it: rm -rf $venv" >&2
  exit 1
fi
echo "$want" > "$marker"
