"""The refinement node's command line, as a user starts it (``python -m attn6d_ros.node --ros-args ...``), and
the node as a child process of a tool."""

from __future__ import annotations

import subprocess
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


def start_node(parameters: Mapping[str, object]) -> subprocess.Popen:
    """The node with these parameters in a child process; its stdout is discarded, its stderr kept for
    `exit_message`."""
    return subprocess.Popen(
        node_command(parameters), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def exit_message(process: subprocess.Popen) -> str:
    """'still running', or the last 500 characters the exited node wrote to stderr."""
    if process.poll() is None:
        return "still running"
    return (process.stderr.read() if process.stderr else "")[-500:]
