"""launch/refine.launch.py: its launch description (launch_ros) and its script fallback (no launch)."""

import importlib.util
import re
import signal
import subprocess
import sys
import time
import types
import typing
from pathlib import Path

import numpy as np
import pytest
import yaml
from node_support import REPO, make_checkpoint
from upstream_support import require

LAUNCH_FILE = REPO / "launch" / "refine.launch.py"


def _load(name: str = "refine_launch"):
    spec = importlib.util.spec_from_file_location(name, LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arguments_default_like_the_launch_description() -> None:
    launch = _load()
    values = launch.parse_arguments([])
    assert (
        values["params_file"].endswith("config/refine.yaml")
        and Path(values["params_file"]).is_file()
    )
    assert {k: values[k] for k in ("namespace", "image", "use_sim_time", "log_level", "rviz")} == {
        "namespace": "",
        "image": "image",
        "use_sim_time": "false",
        "log_level": "info",
        "rviz": "false",
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["namespace=cam"], "launch arguments are name:=value, got 'namespace=cam'"),
        (["imag:=x"], "unknown launch argument 'imag'"),
        (["use_sim_time:=yes"], "launch argument 'use_sim_time' must be true or false, got 'yes'"),
        (["log_level:=loud"], "launch argument 'log_level' must be one of"),
    ],
)
def test_bad_arguments_name_the_argument(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _load().parse_arguments(argv)


def test_node_command_carries_namespace_remaps_sim_time_and_log_level() -> None:
    launch = _load()
    values = launch.parse_arguments(
        ["namespace:=cam1", "image:=/cam1/color/image_raw", "use_sim_time:=True", "log_level:=DEBUG",
         "params_file:=/tmp/p.yaml"]
    )  # fmt: skip
    command = launch.node_command(values, python="python3")
    assert command[:4] == ["python3", "-m", "attn6d_ros.node", "--ros-args"]
    text = " ".join(command[4:])
    assert text == (
        "-r __ns:=/cam1 --params-file /tmp/p.yaml -p use_sim_time:=true "
        "-r image:=/cam1/color/image_raw --log-level debug"
    )


def test_dds_profile_defaults_to_the_users_else_the_packages_and_reaches_the_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    launch = _load()
    for variable in launch.PROFILE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    values = launch.parse_arguments([])
    assert values["dds_profile"].endswith("config/fastdds_large_frames.xml")
    assert Path(values["dds_profile"]).is_file()
    env = launch.node_environment(values, {"PATH": "/bin"})
    assert {v: env[v] for v in launch.PROFILE_VARIABLES} == dict.fromkeys(
        launch.PROFILE_VARIABLES, values["dds_profile"]
    )
    monkeypatch.setenv("FASTRTPS_DEFAULT_PROFILES_FILE", "/users/own.xml")  # a Jazzy user's own
    assert launch.parse_arguments([])["dds_profile"] == "/users/own.xml"
    none = launch.parse_arguments(["dds_profile:=none"])
    assert launch.node_environment(none, {"PATH": "/bin"}) == {"PATH": "/bin"}


def _hide_launch_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes `import launch...` and `import launch_ros...` fail, as with the PyPI wheels, even where the
    real packages are installed (a None entry in sys.modules stops the import)."""
    for name in [n for n in sys.modules if n.split(".")[0] in ("launch", "launch_ros")]:
        monkeypatch.setitem(sys.modules, name, None)
    for name in ("launch", "launch_ros"):
        monkeypatch.setitem(sys.modules, name, None)


def test_launch_description_needs_the_launch_packages_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _hide_launch_packages(monkeypatch)
    launch = _load("refine_launch_without_launch")
    assert not launch.HAVE_LAUNCH
    with pytest.raises(ImportError, match="run this file as a script"):
        launch.generate_launch_description()


class _Recorder:
    """Stands in for a launch class: records its constructor arguments."""

    instances: typing.ClassVar[list] = []

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs
        _Recorder.instances.append(self)


def _stub_launch_modules(monkeypatch: pytest.MonkeyPatch) -> dict[str, type]:
    classes = {}
    layout = {
        "launch": ["LaunchDescription"],
        "launch.actions": ["DeclareLaunchArgument", "SetEnvironmentVariable"],
        "launch.conditions": ["IfCondition"],
        "launch.substitutions": [
            "EnvironmentVariable",
            "LaunchConfiguration",
            "NotEqualsSubstitution",
            "PathJoinSubstitution",
        ],
        "launch_ros.actions": ["Node"],
        "launch_ros.parameter_descriptions": ["ParameterFile", "ParameterValue"],
        "launch_ros.substitutions": ["FindPackageShare"],
    }
    for module_name, names in layout.items():
        module = types.ModuleType(module_name)
        for name in names:
            classes[name] = type(name, (_Recorder,), {})
            setattr(module, name, classes[name])
        monkeypatch.setitem(sys.modules, module_name, module)
    monkeypatch.setitem(sys.modules, "launch_ros", types.ModuleType("launch_ros"))
    return classes


def test_launch_description_declares_every_argument_and_wires_the_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With stand-ins for launch/launch_ros (in place of the real ones where those are installed), checks
    what generate_launch_description builds; the real description is evaluated and run further below."""
    classes = _stub_launch_modules(monkeypatch)
    launch = _load("refine_launch_stubbed")
    assert launch.HAVE_LAUNCH
    description = launch.generate_launch_description()
    entities = description.args[0]
    declared = [e for e in entities if isinstance(e, classes["DeclareLaunchArgument"])]
    assert [d.args[0] for d in declared] == [name for name, _, _ in launch.ARGUMENTS]
    node, rviz = [e for e in entities if isinstance(e, classes["Node"])]
    assert (node.kwargs["package"], node.kwargs["executable"], node.kwargs["name"]) == (
        "attn6d_ros",
        "refine_node",
        "attn6d_refiner",
    )
    assert node.kwargs["namespace"].args == ("namespace",)
    remaps = {name: config.args[0] for name, config in node.kwargs["remappings"]}
    assert remaps == {"image": "image", "camera_info": "camera_info", "detections": "detections"}
    params_file, sim_time = node.kwargs["parameters"]
    assert params_file.kwargs == {"allow_substs": True} and params_file.args[0].args == (
        "params_file",
    )
    assert sim_time["use_sim_time"].kwargs == {"value_type": bool}
    # ROS arguments through ros_arguments=, not a second --ros-args block in arguments= (issue 30).
    assert "arguments" not in node.kwargs
    assert node.kwargs["ros_arguments"][0] == "--log-level"
    assert node.kwargs["ros_arguments"][1].args == ("log_level",)
    # Both Fast DDS profile variables, from the dds_profile argument, unless it is 'none'.
    profile = [e for e in entities if isinstance(e, classes["SetEnvironmentVariable"])]
    assert [p.args[0] for p in profile] == list(launch.PROFILE_VARIABLES)
    assert all(p.args[1].args == ("dds_profile",) for p in profile)
    assert all(p.kwargs["condition"].args[0].args[1] == "none" for p in profile)
    assert entities.index(profile[-1]) < entities.index(node)  # set before the node starts
    assert rviz.kwargs["package"] == "rviz2" and rviz.kwargs["condition"].args[0].args == ("rviz",)


@pytest.mark.ros
@pytest.mark.slow
def test_script_fallback_starts_the_node_namespaced_and_remapped(
    ros_domain: int, tmp_path: Path
) -> None:
    import rclpy
    from rcl_interfaces.srv import GetParameters

    checkpoint = make_checkpoint(tmp_path / "m.pt")
    params = tmp_path / "params.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n"
        f"    checkpoint: {checkpoint}\n    objects_file: {REPO / 'config' / 'objects.yaml'}\n"
        "    device: cpu\n    cpu_threads: 1\n    stages: 1\n"
    )
    log = open(tmp_path / "launch.log", "w")
    launcher = subprocess.Popen(
        [sys.executable, str(LAUNCH_FILE), f"params_file:={params}", "namespace:=cam1",
         "image:=/cam1/color/image_raw", "use_sim_time:=true"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    rclpy.init()
    try:
        probe = rclpy.create_node("launch_probe")
        # Graph discovery is eventually consistent: one topic being visible does not mean the
        # others are yet, so wait until every expected endpoint has been seen (or time runs out).
        wanted_subs = {"/cam1/color/image_raw", "/cam1/camera_info", "/cam1/detections"}
        wanted_pubs = {"/cam1/refined/detections", "/cam1/refined/details", "/tf"}
        deadline = time.monotonic() + 90.0
        subscriptions: set[str] = set()
        publishers: set[str] = set()
        while time.monotonic() < deadline and launcher.poll() is None:
            rclpy.spin_once(probe, timeout_sec=0.2)
            if ("attn6d_refiner", "/cam1") not in probe.get_node_names_and_namespaces():
                continue
            subscriptions = _topics(probe.get_subscriber_names_and_types_by_node)
            publishers = _topics(probe.get_publisher_names_and_types_by_node)
            if wanted_subs <= subscriptions and wanted_pubs <= publishers:
                break
        client = probe.create_client(GetParameters, "/cam1/attn6d_refiner/get_parameters")
        assert client.wait_for_service(timeout_sec=20.0)
        future = client.call_async(GetParameters.Request(names=["use_sim_time", "stages"]))
        rclpy.spin_until_future_complete(probe, future, timeout_sec=20.0)
        values = future.result().values
        probe.destroy_node()
    finally:
        rclpy.shutdown()
        launcher.send_signal(signal.SIGINT)
        code = launcher.wait(timeout=30)
        log.close()
    text = (tmp_path / "launch.log").read_text()
    assert wanted_subs <= subscriptions, text
    assert wanted_pubs <= publishers, text
    assert values[0].bool_value is True and values[1].integer_value == 1
    assert code == 0, text


def _topics(query_by_node) -> set[str]:
    """The topic names of the launched node's endpoints: ``query_by_node`` is the probe's
    get_subscriber_names_and_types_by_node or get_publisher_names_and_types_by_node."""
    return {name for name, _ in query_by_node("attn6d_refiner", "/cam1")}


# -- the real launch and launch_ros (installed from ../shared/upstream by `make setup`) ----------------------


@pytest.mark.ros
def test_real_launch_description_namespaces_remaps_and_passes_sim_time_and_log_level(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The real launch and launch_ros evaluate the description as `ros2 launch` does: node name, namespace,
    remaps, the parameter files (use_sim_time as a bool), the log level, and the conditions of the DDS profile
    and RViz."""
    require("launch_ros")
    from launch.actions import SetEnvironmentVariable
    from launch.utilities import perform_substitutions
    from launch_ros.actions import Node

    from launch import LaunchContext

    monkeypatch.setenv(
        "AMENT_PREFIX_PATH", sys.prefix
    )  # as a sourced ROS 2 sets it: launch's grammar
    launch = _load("refine_launch_real")
    assert launch.HAVE_LAUNCH
    description = launch.generate_launch_description()
    declared = description.get_launch_arguments()
    assert [d.name for d in declared] == [name for name, _, _ in launch.ARGUMENTS]
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    stages: 1\n")
    profile_file = REPO / "config" / "fastdds_large_frames_loopback.xml"
    context = LaunchContext()
    context.launch_configurations.update(
        {"params_file": str(params), "namespace": "cam1", "image": "/cam1/color/image_raw",
         "use_sim_time": "True", "log_level": "debug", "dds_profile": str(profile_file)}
    )  # fmt: skip
    for argument in declared:
        argument.execute(context)  # sets the defaults of those not given
    assert context.launch_configurations["rviz"] == "false"
    node, rviz = [e for e in description.entities if isinstance(e, Node)]
    node._perform_substitutions(
        context
    )  # the first step of Node.execute (launch_ros's tests call it)
    assert (node.node_package, node.node_executable) == ("attn6d_ros", "refine_node")
    assert node.node_name == "/cam1/attn6d_refiner" and node.expanded_node_namespace == "/cam1"
    assert node.expanded_remapping_rules == [
        ("image", "/cam1/color/image_raw"),
        ("camera_info", "camera_info"),
        ("detections", "detections"),
    ]
    context.extend_locals(
        {"ros_specific_arguments": {"name": "__node:=attn6d_refiner", "ns": "__ns:=/cam1"}}
    )
    command = [
        perform_substitutions(context, part) for part in node.cmd[1:]
    ]  # [0]: the executable
    assert command[:3] == ["--ros-args", "--log-level", "debug"]
    files = [command[i + 1] for i, word in enumerate(command) if word == "--params-file"]
    assert [yaml.safe_load(Path(f).read_text()) for f in files] == [
        {"/**": {"ros__parameters": {"stages": 1}}},
        {"/cam1/attn6d_refiner": {"ros__parameters": {"use_sim_time": True}}},
    ]
    profile = [e for e in description.entities if isinstance(e, SetEnvironmentVariable)]
    assert [p.condition.evaluate(context) for p in profile] == [True, True]
    assert {perform_substitutions(context, p.value) for p in profile} == {str(profile_file)}
    context.launch_configurations["dds_profile"] = "none"
    assert [p.condition.evaluate(context) for p in profile] == [False, False]
    assert rviz.condition.evaluate(context) is False


def _ros2_launch(install: Path, arguments: list[str], log_path: Path) -> subprocess.Popen:
    """`ros2 launch attn6d_ros refine.launch.py ARGUMENTS` in the environment of a sourced workspace."""
    import os

    from colcon_workspace import sourced_environment

    env = sourced_environment(install)
    env.update(
        ROS_DOMAIN_ID=os.environ["ROS_DOMAIN_ID"],
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        PYTHONUNBUFFERED="1",
        RCUTILS_LOGGING_BUFFERED_STREAM="0",
    )
    with open(log_path, "w") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            ["ros2", "launch", "attn6d_ros", "refine.launch.py", *arguments],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=install.parent.parent,
        )  # fmt: skip


@pytest.mark.ros
@pytest.mark.slow
def test_ros2_launch_show_args_lists_every_argument(
    colcon_install: Path, ros_domain: int, tmp_path: Path
) -> None:
    require("ros2launch")
    launch = _load()
    process = _ros2_launch(colcon_install, ["--show-args"], tmp_path / "show.log")
    assert process.wait(timeout=120) == 0, (tmp_path / "show.log").read_text()
    text = (tmp_path / "show.log").read_text()
    for name, _, _ in launch.ARGUMENTS:
        assert f"'{name}':" in text, f"{name} missing from --show-args:\n{text}"


@pytest.mark.ros
@pytest.mark.slow
def test_ros2_launch_refines_a_frame_and_stops_cleanly_on_sigint(
    colcon_install: Path, ros_domain: int, tmp_path: Path
) -> None:
    """The real `ros2 launch` with a namespace, a remapped image topic, use_sim_time and a log level: the node
    comes up under /cam1 with those, refines a published frame, and Ctrl-C (SIGINT to ros2 launch) ends the
    launch and the node cleanly."""
    require("ros2launch")
    import rclpy
    from node_support import Peer, key_of, pose, stamp_msg, textured_image
    from rcl_interfaces.srv import GetParameters
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image

    checkpoint = make_checkpoint(tmp_path / "m.pt")
    params = tmp_path / "params.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n"
        f"    checkpoint: {checkpoint}\n    objects_file: {REPO / 'config' / 'objects.yaml'}\n"
        "    device: cpu\n    cpu_threads: 1\n    stages: 1\n    min_score: 0.0\n    guard: false\n"
        "    qos:\n      image:\n        reliability: reliable\n        depth: 10\n"
    )
    log_path = tmp_path / "launch.log"
    launcher = _ros2_launch(
        colcon_install,
        [f"params_file:={params}", "namespace:=cam1", "image:=/cam1/color/image_raw",
         "use_sim_time:=true", "log_level:=debug",
         f"dds_profile:={REPO / 'config' / 'fastdds_large_frames_loopback.xml'}"],
        log_path,
    )  # fmt: skip
    rclpy.init()
    try:
        peer = Peer(namespace="cam1")
        qos = peer.pub_image.qos_profile
        peer.pub_image = peer.node.create_publisher(Image, "/cam1/color/image_raw", qos)
        clock = peer.node.create_publisher(Clock, "/clock", 10)
        ready = peer.wait_for_node(timeout=180.0)
        assert ready, f"the launched node never matched the peer:\n{log_path.read_text()}"
        client = peer.node.create_client(GetParameters, "/cam1/attn6d_refiner/get_parameters")
        assert client.wait_for_service(timeout_sec=30.0)
        future = client.call_async(GetParameters.Request(names=["use_sim_time", "stages"]))
        rclpy.spin_until_future_complete(peer.node, future, timeout_sec=30.0)
        use_sim_time, stages = future.result().values
        assert use_sim_time.bool_value is True and stages.integer_value == 1

        t = 1_700_000_000.25
        clock.publish(Clock(clock=stamp_msg(t)))
        rgb = textured_image(320, 240)
        K = np.array([[250.0, 0.0, 159.5], [0.0, 250.0, 119.5], [0.0, 0.0, 1.0]])
        peer.publish_frame(rgb, K, t, [("mug", "demo_object", pose(0.02))])
        refined = peer.spin_until(lambda: key_of(t) in peer.outputs["refined/pose"], 120.0)
        assert refined, f"no refined/pose:\n{log_path.read_text()}"
        (pose_msg,) = peer.outputs["refined/pose"][key_of(t)]
        assert pose_msg.header.frame_id == "camera_optical_frame"
        assert np.isfinite([pose_msg.pose.position.x, pose_msg.pose.position.z]).all()
        peer.node.destroy_node()
    finally:
        rclpy.shutdown()
        launcher.send_signal(signal.SIGINT)
        try:
            code = launcher.wait(timeout=60)
        finally:
            if launcher.poll() is None:
                launcher.kill()
    text = log_path.read_text()
    assert code == 0, text
    assert "[refine_node-1]" in text and "synchronizer message_filters" in text, text
    assert re.search(r"process has finished cleanly \[pid \d+\]", text), text
    assert "Traceback" not in text and "[ERROR]" not in text, text
