"""Shared helpers of the node tests: tiny checkpoints, input messages, a test peer and a node process.

The peer is an rclpy node in the test process that publishes image, camera_info and detections and records
every output of the refinement node, keyed by the image stamp it carries. `NodeProcess` runs the node as its
own process, as users do (`python -m attn6d_ros.node --ros-args ...`), with its log in a file the test can
read.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from attn6d_ros.ros import codec
from attn6d_ros.ros.node_command import node_command

REPO = Path(__file__).resolve().parents[1]
OBJECTS_FILE = REPO / "config" / "objects.yaml"
FRAME = "camera_optical_frame"
K_VGA = np.array([[500.0, 0.0, 319.5], [0.0, 500.0, 239.5], [0.0, 0.0, 1.0]])


def make_checkpoint(path: Path, *, shared: bool = True, stages: int = 4) -> Path:
    """A random-init lite refiner with 64 px crops: fast on a CPU; meaningless poses, real plumbing."""
    from attn6d_ros.checkpoint import save_checkpoint
    from attn6d_ros.network import ModelConfig, RefinerNet

    save_checkpoint(
        path, RefinerNet(ModelConfig.lite(crop_size=64, shared_stages=shared, num_stages=stages))
    )
    return path


def pose(x: float = 0.0, y: float = 0.0, z: float = 0.6, yaw_deg: float = 20.0) -> np.ndarray:
    """T_cam_obj: the object rotated about the optical axis, at (x, y, z) metres."""
    a = np.radians(yaw_deg)
    T = np.eye(4)
    T[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    T[:3, 3] = [x, y, z]
    return T


def textured_image(width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: smooth colour blobs plus noise, so crops and scores are not degenerate."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [
        127 + 100 * np.sin(xx / (17 + 9 * c) + rng.uniform(0, 6)) * np.cos(yy / (23 + 5 * c))
        for c in range(3)
    ]
    image = np.stack(channels, axis=2) + rng.normal(0, 8, size=(height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


# The input messages of a frame stamped `t` seconds, with rclpy's classes (ros/codec.py's writers).
key_of = codec.seconds_to_ns  # the stamp key (ns) of a frame stamped t seconds: Peer.outputs' keys


def stamp_msg(t: float):
    """builtin_interfaces/Time of `t` seconds."""
    return codec.time_msg(codec.rclpy_types(), key_of(t))


def header_msg(t: float, frame: str = FRAME):
    return codec.header_msg(codec.rclpy_types(), key_of(t), frame)


def image_msg(rgb: np.ndarray, t: float, frame: str = FRAME, encoding: str = "rgb8"):
    return codec.image_msg(codec.rclpy_types(), rgb, header_msg(t, frame), encoding)


def camera_info_msg(K: np.ndarray, width: int, height: int, t: float, frame: str = FRAME):
    return codec.camera_info_msg(codec.rclpy_types(), K, width, height, header_msg(t, frame))


def detections_msg(t: float, items: list, frame: str = FRAME, score: float = 0.9):
    """items: (detection id, class id, T or (position xyz, quaternion xyzw)), each with `score`."""
    scored = [(*item, score) for item in items]
    return codec.detections_msg(codec.rclpy_types(), header_msg(t, frame), scored)


class Peer:
    """Publishes the node's inputs and records its outputs (`outputs[topic][stamp key] -> [messages]`)."""

    def __init__(self, namespace: str = "", *, image_qos=None, input_depth: int = 10) -> None:
        import rclpy
        from attn6d_ros.msg import RefinementArray
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image
        from tf2_msgs.msg import TFMessage
        from vision_msgs.msg import Detection3DArray

        self.node = rclpy.create_node("attn6d_test_peer", namespace=namespace)
        reliable = QoSProfile(depth=input_depth, reliability=ReliabilityPolicy.RELIABLE)
        qos = image_qos or reliable
        self.pub_image = self.node.create_publisher(Image, "image", qos)
        self.pub_info = self.node.create_publisher(CameraInfo, "camera_info", qos)
        self.pub_detections = self.node.create_publisher(Detection3DArray, "detections", reliable)
        self.outputs: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
        self.diagnostics: list = []
        self.tf: list = []
        for topic, msg_type in (
            ("refined/detections", Detection3DArray),
            ("refined/pose", PoseStamped),
            ("refined/details", RefinementArray),
        ):
            self.node.create_subscription(msg_type, topic, self._recorder(topic), 100)
        self.node.create_subscription(TFMessage, "/tf", self.tf.append, 100)
        self.node.create_subscription(
            DiagnosticArray, "/diagnostics", self.diagnostics.append, 100
        )
        self.overlays: dict[int, object] = {}
        self._overlay_sub = None

    def subscribe_overlay(self) -> None:
        from sensor_msgs.msg import Image

        self._overlay_sub = self.node.create_subscription(
            Image,
            "debug/attention_overlay",
            lambda m: self.overlays.setdefault(codec.stamp_ns(m.header), m),
            10,
        )

    def subscribe_markers(self) -> None:
        from visualization_msgs.msg import MarkerArray

        self.markers: dict[int, object] = {}
        self._markers_sub = self.node.create_subscription(
            MarkerArray,
            "debug/markers",
            lambda m: self.markers.setdefault(codec.stamp_ns(m.markers[0].header), m),
            10,
        )

    def _recorder(self, topic: str):
        def record(msg) -> None:
            self.outputs[topic][codec.stamp_ns(msg.header)].append(msg)

        return record

    def publish_frame(
        self, rgb, K, t: float, items: list | None, *, info=None, image=None
    ) -> None:
        """Image, camera_info and detections stamped `t`; `items` None: no detections message at all."""
        height, width = rgb.shape[:2]
        self.pub_image.publish(image or image_msg(rgb, t))
        self.pub_info.publish(info or camera_info_msg(K, width, height, t))
        if items is not None:
            self.pub_detections.publish(detections_msg(t, items))

    def spin_until(self, condition, timeout: float, executor=None) -> bool:
        import rclpy

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            if executor is not None:
                executor.spin_once(timeout_sec=0.05)
            else:
                rclpy.spin_once(self.node, timeout_sec=0.05)
        return condition()

    def wait_for_node(self, timeout: float = 60.0) -> bool:
        """Waits until the refinement node and this peer see each other's topics both ways (discovery), so
        that no input and no (volatile) output of the first frame is lost."""
        subscriptions = list(self.node.subscriptions)

        def matched() -> bool:
            inputs = (self.pub_image, self.pub_info, self.pub_detections)
            return all(p.get_subscription_count() > 0 for p in inputs) and all(
                s.get_publisher_count() > 0 for s in subscriptions
            )

        return self.spin_until(matched, timeout)

    def details(self, t: float):
        got = self.outputs["refined/details"].get(key_of(t))
        return got[0] if got else None

    def diagnostic_values(self) -> dict[str, str]:
        if not self.diagnostics:
            return {}
        return {kv.key: kv.value for kv in self.diagnostics[-1].status[0].values}


class NodeProcess:
    """`python -m attn6d_ros.node` in its own process with parameters; its log goes to `log_path`."""

    def __init__(
        self,
        tmp_path: Path,
        params: dict,
        *,
        ros_args: list[str] | None = None,
        name: str = "node",
    ) -> None:
        self.log_path = tmp_path / f"{name}.log"
        args = node_command(params, ros_args=ros_args)
        env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0")
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=REPO
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready:" in self.log():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"node exited with {self.process.returncode}:\n{self.log()}")
            time.sleep(0.1)
        raise AssertionError(f"node not ready after {timeout} s:\n{self.log()}")

    def wait_exit(self, timeout: float = 60.0) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(2)  # SIGINT, as Ctrl-C
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def base_params(checkpoint: Path, /, **overrides) -> dict:
    """Node parameters for tests: the tiny checkpoint, the demo object, 1 CPU thread, 1 stage, all scores
    (random weights: neither min_score nor the guard holds a refinement back)."""
    params = {
        "checkpoint": str(checkpoint),
        "objects_file": str(OBJECTS_FILE),
        "device": "cpu",
        "cpu_threads": 1,
        "stages": 1,
        "min_score": 0.0,
        "guard": False,
        "overlay.max_rate_hz": 0.0,
        "qos.image.reliability": "reliable",
        "qos.image.depth": 10,
    }
    params.update(overrides)
    return params


# Nodes made by refine_node during the running test: rclpy_session destroys them (again: harmless) before
# rclpy.shutdown, so a failing test leaves no node or worker thread behind.
_LIVE_NODES: list = []


def refine_node(checkpoint: Path, cli_args: list[str] | None = None, **overrides):
    """A RefineNode in this process with base_params(checkpoint, **overrides)."""
    from rclpy.parameter import Parameter

    from attn6d_ros.node import RefineNode

    params = base_params(checkpoint, **overrides)
    node = RefineNode(
        parameter_overrides=[Parameter(k, value=v) for k, v in params.items()], cli_args=cli_args
    )
    _LIVE_NODES.append(node)
    return node


@contextmanager
def rclpy_session() -> Iterator[None]:
    """rclpy initialised for one test; at the end every refine_node is destroyed and rclpy shut down, also
    when the test failed."""
    import rclpy

    rclpy.init()
    try:
        yield
    finally:
        while _LIVE_NODES:
            _LIVE_NODES.pop().destroy_node()
        rclpy.shutdown()
