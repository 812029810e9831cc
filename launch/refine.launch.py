"""Launches the refinement node: `ros2 launch attn6d_ros refine.launch.py [name:=value ...]`.

Arguments (all optional):
    params_file   parameter YAML (default: the package's config/refine.yaml)
    namespace     namespace of the node and its relative topics (default: none)
    image, camera_info, detections   topics to remap the three inputs to (default: unchanged)
    use_sim_time  true to follow /clock (bags, simulators)
    log_level     debug | info | warn | error | fatal
    rviz          true to also start RViz with config/refine.rviz
    dds_profile   Fast DDS XML profile for the processes started here (FASTDDS_DEFAULT_PROFILES_FILE and
                  FASTRTPS_DEFAULT_PROFILES_FILE; default: the one already set in the environment, else the
                  package's config/fastdds_large_frames.xml, whose shared-memory segments hold camera-sized
                  images; 'none': leave the environment as it is). The camera driver needs it too (README).

Without ROS 2's `launch` and `launch_ros` packages (PyPI wheels have neither), run this file as a script with
the same arguments; it starts the node process with the equivalent command line and forwards Ctrl-C to it:

    python launch/refine.launch.py namespace:=cam1 image:=/cam1/color/image_raw use_sim_time:=true
    python launch/refine.launch.py --show-args
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

PACKAGE = "attn6d_ros"
# (name, default, description); a default of None for params_file means the package's config/refine.yaml.
ARGUMENTS = [
    ("params_file", None, "Parameter YAML of the node (None: <share>/config/refine.yaml)"),
    ("namespace", "", "Namespace of the node and its relative topics"),
    ("image", "image", "Topic of the input image (sensor_msgs/Image)"),
    ("camera_info", "camera_info", "Topic of the input camera_info (sensor_msgs/CameraInfo)"),
    ("detections", "detections", "Topic of the coarse detections (vision_msgs/Detection3DArray)"),
    ("use_sim_time", "false", "Use simulated time from /clock (true|false)"),
    ("log_level", "info", "Log level of the node: debug | info | warn | error | fatal"),
    ("rviz", "false", "Also start RViz with config/refine.rviz (true|false)"),
    (
        "dds_profile",
        None,
        "Fast DDS XML profile for the processes started here (None: the one already in the environment, "
        "else <share>/config/fastdds_large_frames.xml; 'none': unchanged environment)",
    ),
]
# Fast DDS 3 (Kilted) reads the first, Fast DDS 2 (Humble, Jazzy) the second.
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
DDS_PROFILE = "fastdds_large_frames.xml"
REMAPPED_INPUTS = ("image", "camera_info", "detections")
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")

try:
    from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
    from launch.conditions import IfCondition
    from launch.substitutions import (
        EnvironmentVariable,
        LaunchConfiguration,
        NotEqualsSubstitution,
        PathJoinSubstitution,
    )
    from launch_ros.actions import Node
    from launch_ros.parameter_descriptions import ParameterFile, ParameterValue
    from launch_ros.substitutions import FindPackageShare

    from launch import LaunchDescription

    HAVE_LAUNCH = True
except ImportError:
    HAVE_LAUNCH = False


def generate_launch_description():
    """The launch description `ros2 launch` uses (needs the launch and launch_ros packages)."""
    if not HAVE_LAUNCH:
        raise ImportError(
            "the ROS 2 'launch' and 'launch_ros' packages are not importable; run this file as a script "
            "instead: python launch/refine.launch.py [name:=value ...]"
        )
    share = FindPackageShare(PACKAGE)
    defaults = {
        "params_file": PathJoinSubstitution([share, "config", "refine.yaml"]),
        # The user's own profile wins; else ours, whose shared-memory segments hold camera images.
        "dds_profile": EnvironmentVariable(
            PROFILE_VARIABLES[0],
            default_value=EnvironmentVariable(
                PROFILE_VARIABLES[1],
                default_value=PathJoinSubstitution([share, "config", DDS_PROFILE]),
            ),
        ),
    }
    declared = [
        DeclareLaunchArgument(name, default_value=defaults.get(name, default), description=text)
        for name, default, text in ARGUMENTS
    ]
    profile = [
        SetEnvironmentVariable(
            variable,
            LaunchConfiguration("dds_profile"),
            condition=IfCondition(
                NotEqualsSubstitution(LaunchConfiguration("dds_profile"), "none")
            ),
        )
        for variable in PROFILE_VARIABLES
    ]
    node = Node(
        package=PACKAGE,
        executable="refine_node",
        name="attn6d_refiner",
        namespace=LaunchConfiguration("namespace"),
        parameters=[
            ParameterFile(LaunchConfiguration("params_file"), allow_substs=True),
            {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)},
        ],
        remappings=[(name, LaunchConfiguration(name)) for name in REMAPPED_INPUTS],
        ros_arguments=["--log-level", LaunchConfiguration("log_level")],
        output="screen",
        emulate_tty=True,
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        arguments=["-d", PathJoinSubstitution([share, "config", "refine.rviz"])],
        condition=IfCondition(LaunchConfiguration("rviz")),
        output="screen",
    )
    return LaunchDescription([*declared, *profile, node, rviz])


# -- fallback: the same launch without the launch packages -------------------------------------------------


def parse_arguments(argv: list[str]) -> dict[str, str]:
    """`name:=value` tokens (as `ros2 launch` takes them) merged over the defaults.

    Raises:
        ValueError: a token without ':=', an unknown name, or an invalid value; names the argument.
    """
    values = {name: default for name, default, _ in ARGUMENTS}
    for token in argv:
        name, sep, value = token.partition(":=")
        if not sep:
            raise ValueError(f"launch arguments are name:=value, got {token!r}")
        if name not in values:
            raise ValueError(f"unknown launch argument {name!r}; known: {sorted(values)}")
        values[name] = value
    for flag in ("use_sim_time", "rviz"):
        if values[flag].lower() not in ("true", "false"):
            raise ValueError(
                f"launch argument {flag!r} must be true or false, got {values[flag]!r}"
            )
        values[flag] = values[flag].lower()
    if values["log_level"].lower() not in LOG_LEVELS:
        raise ValueError(
            f"launch argument 'log_level' must be one of {LOG_LEVELS}, got {values['log_level']!r}"
        )
    if values["params_file"] is None:
        values["params_file"] = str(_share_dir() / "config" / "refine.yaml")
    if values["dds_profile"] is None:
        user = [os.environ.get(v) for v in PROFILE_VARIABLES if os.environ.get(v)]
        values["dds_profile"] = user[0] if user else str(_share_dir() / "config" / DDS_PROFILE)
    return values


def node_environment(values: dict[str, str], environ: dict[str, str]) -> dict[str, str]:
    """The environment of the started processes: `environ` with the Fast DDS profile of `values`."""
    env = dict(environ)
    if values["dds_profile"] != "none":
        for variable in PROFILE_VARIABLES:
            env[variable] = values["dds_profile"]
    return env


def node_command(values: dict[str, str], *, python: str = sys.executable) -> list[str]:
    """The node's command line equivalent to the launch description for these argument values."""
    command = [python, "-m", "attn6d_ros.node", "--ros-args"]
    namespace = values["namespace"].strip()
    if namespace:
        command += ["-r", f"__ns:={namespace if namespace.startswith('/') else '/' + namespace}"]
    command += ["--params-file", values["params_file"]]
    command += ["-p", f"use_sim_time:={values['use_sim_time']}"]
    for name in REMAPPED_INPUTS:
        if values[name] != name:
            command += ["-r", f"{name}:={values[name]}"]
    command += ["--log-level", values["log_level"].lower()]
    return command


def _share_dir() -> Path:
    here = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(here))  # a source checkout: attn6d_ros next to launch/
    try:
        from attn6d_ros.paths import share_dir

        return share_dir()
    finally:
        sys.path.remove(str(here))


def main(argv: list[str] | None = None) -> int:
    """Runs the node (and RViz if asked) as child processes until they exit or Ctrl-C; returns the node's
    exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv or "--show-args" in argv or "-s" in argv:
        print(__doc__)
        for name, default, text in ARGUMENTS:
            print(f"    '{name}': {text} (default: {default!r})")
        return 0
    try:
        values = parse_arguments(argv)
    except ValueError as exc:
        print(f"refine.launch.py: {exc}", file=sys.stderr)
        return 2
    if not Path(values["params_file"]).is_file():
        print(f"refine.launch.py: params_file not found: {values['params_file']}", file=sys.stderr)
        return 2
    if values["dds_profile"] != "none" and not Path(values["dds_profile"]).is_file():
        print(f"refine.launch.py: dds_profile not found: {values['dds_profile']}", file=sys.stderr)
        return 2
    commands = [node_command(values)]
    if values["rviz"] == "true":
        rviz = shutil.which("rviz2")
        if rviz is None:
            print("refine.launch.py: rviz:=true but rviz2 is not on PATH", file=sys.stderr)
            return 2
        commands.append([rviz, "-d", str(_share_dir() / "config" / "refine.rviz")])
    env = node_environment(values, os.environ)
    print(
        f"[refine.launch.py] starting: {' '.join(commands[0])} (Fast DDS profile: "
        f"{values['dds_profile']})",
        flush=True,
    )
    children = [subprocess.Popen(c, env=env) for c in commands]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    code = children[0].wait()
    for child in children[1:]:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
        child.wait()
    return code


if __name__ == "__main__":
    sys.exit(main())
