"""attn6d-bench's node timing: starts refine_node in its own process, publishes 640x480 frames one at a time
and times image publication -> refined/pose receipt. Usage: _bench_node_client.py CHECKPOINT FRAMES.
Prints one JSON line. (A separate script so that rclpy is only imported where it is needed.)"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose

from attn6d_ros.geometry import pose_to_quat_xyzw
from attn6d_ros.mesh import load_mesh
from attn6d_ros.paths import resolve_path
from attn6d_ros.synth import SceneGenerator, SynthConfig


def _messages(stamp, image: np.ndarray, K: np.ndarray, T: np.ndarray):
    header_frame = "bench_camera_optical_frame"
    img = Image(height=480, width=640, encoding="rgb8", step=640 * 3, data=image.tobytes())
    img.header.stamp, img.header.frame_id = stamp, header_frame
    info = CameraInfo(height=480, width=640, k=K.flatten().tolist(), distortion_model="plumb_bob")
    info.header = img.header
    detections = Detection3DArray(header=img.header)
    hypothesis = ObjectHypothesisWithPose()
    hypothesis.hypothesis.class_id = "demo_object"
    q, t = pose_to_quat_xyzw(T)
    p = hypothesis.pose.pose
    p.position.x, p.position.y, p.position.z = (float(v) for v in t)
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = (float(v) for v in q)
    detections.detections = [Detection3D(header=img.header, results=[hypothesis])]
    return img, info, detections


def main() -> int:
    checkpoint, frames = sys.argv[1], int(sys.argv[2])
    model = load_mesh(resolve_path("package://attn6d_ros/models/demo_object.ply"))
    generator = SceneGenerator([model], SynthConfig())
    scene = generator.test_scene(0, 0)
    node_proc = subprocess.Popen(
        [sys.executable, "-m", "attn6d_ros.node", "--ros-args", "-p", f"checkpoint:={checkpoint}",
         "-p", "publish_tf:=false", "-p", "min_score:=0.0", "-p", "qos.image.reliability:=reliable"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    rclpy.init()
    node = rclpy.create_node("attn6d_bench_client")
    pubs = [node.create_publisher(t, name, 10) for t, name in
            ((Image, "image"), (CameraInfo, "camera_info"), (Detection3DArray, "detections"))]  # fmt: skip
    received: dict[int, float] = {}

    def on_pose(msg: PoseStamped) -> None:
        received.setdefault(
            msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec, time.perf_counter()
        )

    node.create_subscription(PoseStamped, "refined/pose", on_pose, 10)
    latencies = []
    try:
        deadline = time.monotonic() + 90.0  # model load + warm-up + discovery
        ready = False
        while time.monotonic() < deadline and not ready:  # until the first answer comes back
            stamp = node.get_clock().now().to_msg()
            for pub, msg in zip(
                pubs, _messages(stamp, scene.image, scene.K, scene.T_init), strict=True
            ):
                pub.publish(msg)
            end = time.monotonic() + 1.0
            while time.monotonic() < end and not received:
                rclpy.spin_once(node, timeout_sec=0.05)
            ready = bool(received)
        if not ready:
            raise RuntimeError("the node never answered: " + _tail(node_proc))
        for _ in range(frames):
            received.clear()
            stamp = node.get_clock().now().to_msg()
            key = stamp.sec * 10**9 + stamp.nanosec
            msgs = _messages(stamp, scene.image, scene.K, scene.T_init)
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


def _tail(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        return "still running"
    return (proc.stderr.read() if proc.stderr else "")[-500:]


if __name__ == "__main__":
    raise SystemExit(main())
