"""The refinement node's command line, as a user starts it: ``python -m attn6d_ros.node --ros-args ...``."""

from __future__ import annotations

import sys
from collections.abc import Mapping


def ros_value(value: object) -> str:
    """A parameter value as the command line writes it (booleans as true / false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def node_command(
    parameters: Mapping[str, object],
    *,
    assignments: list[str] | None = None,
    namespace: str = "",
    remaps: Mapping[str, str] | None = None,
    log_level: str = "",
    ros_args: list[str] | None = None,
) -> list[str]:
    """The argv that runs the node with this Python.

    Args:
        parameters: name -> value, each as ``-p name:=value``.
        assignments: further ``NAME:=VALUE`` parameters written as given (e.g. from a user's --param).
        namespace: the node's namespace (``-r __ns:=...``); empty: none.
        remaps: topic -> topic, each as ``-r from:=to``.
        log_level: ``--log-level`` (debug, info, ...); empty: the default.
        ros_args: further ROS arguments, appended as they are.
    """
    command = [sys.executable, "-m", "attn6d_ros.node", "--ros-args"]
    if namespace:
        command += ["-r", f"__ns:={namespace}"]
    for name, value in parameters.items():
        command += ["-p", f"{name}:={ros_value(value)}"]
    for assignment in assignments or []:
        command += ["-p", assignment]
    for source, target in (remaps or {}).items():
        command += ["-r", f"{source}:={target}"]
    if log_level:
        command += ["--log-level", log_level]
    return command + list(ros_args or [])
