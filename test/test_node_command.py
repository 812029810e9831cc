"""ros/node_command.py: the node's command line, shared by attn6d-demo, attn6d-bench and the node tests."""

import sys
from types import SimpleNamespace

from attn6d_ros.ros.node_command import node_command


def test_parameters_namespace_remaps_log_level_and_further_arguments_in_order() -> None:
    command = node_command(
        {"checkpoint": "/w/m.pt", "guard": False, "publish_tf": True, "min_score": 0.5},
        assignments=["stages:=2"],
        namespace="/demo",
        remaps={"image": "/demo/camera/image_rect"},
        log_level="debug",
        ros_args=["-r", "__node:=other"],
    )
    assert command == [
        sys.executable, "-m", "attn6d_ros.node", "--ros-args", "-r", "__ns:=/demo",
        "-p", "checkpoint:=/w/m.pt", "-p", "guard:=false", "-p", "publish_tf:=true",
        "-p", "min_score:=0.5", "-p", "stages:=2", "-r", "image:=/demo/camera/image_rect",
        "--log-level", "debug", "-r", "__node:=other",
    ]  # fmt: skip


def test_nothing_but_parameters() -> None:
    assert node_command({"device": "cpu"}) == [
        sys.executable, "-m", "attn6d_ros.node", "--ros-args", "-p", "device:=cpu",
    ]  # fmt: skip


def test_the_demo_starts_the_node_in_its_namespace_with_its_topics() -> None:
    from attn6d_ros.tools.demo import _node_command

    args = SimpleNamespace(
        checkpoint="/w/m.pt", objects="/w/objects.yaml", device="cpu", cpu_threads=2, stages=0,
        detect_every=3, param=["min_score:=0.5"],
    )  # fmt: skip
    command = _node_command(args)
    assert command[:6] == [
        sys.executable,
        "-m",
        "attn6d_ros.node",
        "--ros-args",
        "-r",
        "__ns:=/demo",
    ]
    pairs = list(zip(command[4::2], command[5::2], strict=True))
    assert ("-p", "tracking.enabled:=true") in pairs and ("-p", "min_score:=0.5") in pairs
    assert ("-p", "overlay.max_rate_hz:=0.0") in pairs and ("-p", "checkpoint:=/w/m.pt") in pairs
    assert ("-r", "detections:=/demo/detector/detections") in pairs
    assert command[-2:] == ["--log-level", "info"]
