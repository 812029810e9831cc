"""launch/refine.launch.py: its launch description (launch_ros) and its script fallback (no launch)."""

import importlib.util
import signal
import subprocess
import sys
import time
import types
import typing
from pathlib import Path

import pytest
from node_support import REPO, make_checkpoint

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


def test_launch_description_needs_the_launch_packages_and_says_so() -> None:
    launch = _load()
    if launch.HAVE_LAUNCH:
        pytest.skip("launch and launch_ros are installed: the real description is tested below")
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
    """With stand-ins for launch/launch_ros (absent here), checks what generate_launch_description builds."""
    try:
        import launch_ros  # noqa: F401
    except ImportError:
        classes = _stub_launch_modules(monkeypatch)
    else:  # pragma: no cover - only where ROS 2 launch is installed
        pytest.skip(
            "real launch_ros present: `ros2 launch attn6d_ros refine.launch.py` is the check there"
        )
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
