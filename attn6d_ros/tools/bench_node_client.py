"""attn6d-bench's node timing: starts the node in its own process, publishes 640x480 frames one at a time and
times image publication -> refined/pose receipt. Prints one JSON line. Usage:
``python -m attn6d_ros.tools.bench_node_client CHECKPOINT FRAMES`` (a process of its own, so that rclpy is
only imported where it is needed)."""

from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection3DArray

from attn6d_ros.mesh import load_mesh
from attn6d_ros.paths import resolve_path
from attn6d_ros.ros import codec
from attn6d_ros.ros.node_command import exit_message, start_node
from attn6d_ros.synth import SceneGenerator, SynthConfig

NODE_PARAMETERS = {"publish_tf": False, "min_score": 0.0, "qos.image.reliability": "reliable"}


def _messages(stamp_ns: int, image: np.ndarray, K: np.ndarray, T: np.ndarray):
    """Image, camera_info and detections (one object at T, score 0) of a frame."""
    types = codec.rclpy_types()
    height, width = image.shape[:2]
    header = codec.header_msg(types, stamp_ns, "bench_camera_optical_frame")
    return (
        codec.image_msg(types, image, header),
        codec.camera_info_msg(types, K, width, height, header),
        codec.detections_msg(types, header, [("", "demo_object", T, 0.0)]),
    )


def main() -> int:
    checkpoint, frames = sys.argv[1], int(sys.argv[2])
    model = load_mesh(resolve_path("package://attn6d_ros/models/demo_object.ply"))
    generator = SceneGenerator([model], SynthConfig())
    scene = generator.test_scene(0, 0)
    node_proc = start_node({"checkpoint": checkpoint, **NODE_PARAMETERS})
    rclpy.init()
    node = rclpy.create_node("attn6d_bench_client")
    pubs = [node.create_publisher(t, name, 10) for t, name in
            ((Image, "image"), (CameraInfo, "camera_info"), (Detection3DArray, "detections"))]  # fmt: skip
    received: dict[int, float] = {}

    def on_pose(msg: PoseStamped) -> None:
        received.setdefault(codec.stamp_ns(msg.header), time.perf_counter())

    node.create_subscription(PoseStamped, "refined/pose", on_pose, 10)
    latencies = []
    try:
        deadline = time.monotonic() + 90.0  # model load + warm-up + discovery
        ready = False
        while time.monotonic() < deadline and not ready:  # until the first answer comes back
            stamp_ns = node.get_clock().now().nanoseconds
            for pub, msg in zip(
                pubs, _messages(stamp_ns, scene.image, scene.K, scene.T_init), strict=True
            ):
                pub.publish(msg)
            end = time.monotonic() + 1.0
            while time.monotonic() < end and not received:
                rclpy.spin_once(node, timeout_sec=0.05)
            ready = bool(received)
        if not ready:
            raise RuntimeError("the node never answered: " + exit_message(node_proc))
        for _ in range(frames):
            received.clear()
            key = node.get_clock().now().nanoseconds
            msgs = _messages(key, scene.image, scene.K, scene.T_init)
            sent = time.perf_counter()
            for pub, msg in zip(pubs, msgs, strict=True):
                pub.publish(msg)
            end = time.monotonic() + 10.0
            while key not in received and time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.01)
            if key in received:
                latencies.append((received[key] - sent) * 1000.0)
    finally:
        node.destroy_node()
        rclpy.shutdown()
        node_proc.terminate()
        node_proc.wait(timeout=20)
    print(json.dumps({
        "image": "640x480 rgb8", "objects": 1, "frames": len(latencies),
        "median_latency_ms": round(statistics.median(latencies), 1),
        "p90_latency_ms": round(float(np.percentile(latencies, 90)), 1),
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
