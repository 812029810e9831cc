"""attn6d-bench --soak: starts the node in its own process, feeds it 640x480 frames with several objects at a
fixed rate for a given time (every 100th frame a bad one: unknown encoding, zero K, a detection without
results, or more detections than max_detections) and samples the node's RSS every 5 s.
Prints one JSON line. Usage:
``python -m attn6d_ros.tools.bench_soak_client CHECKPOINT DURATION_S RATE_HZ OBJECTS WARMUP_S`` (a process of
its own, so that rclpy is only imported where it is needed)."""

from __future__ import annotations

import json
import signal
import sys
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection3DArray

from attn6d_ros.mesh import load_mesh
from attn6d_ros.paths import resolve_path
from attn6d_ros.ros import codec
from attn6d_ros.ros.node_command import exit_message, start_node
from attn6d_ros.tools.bench import _scene
from attn6d_ros.tools.bench_memory import rss_mb

SAMPLE_EVERY_S = 5.0
BAD_EVERY = 100  # frames
SCENES = 8  # distinct frames, cycled


def _frame(stamp_ns: int, image: np.ndarray, K: np.ndarray, poses: list, bad: str = ""):
    """Image, camera_info and detections (the demo object at each of `poses`, score 0.9), spoilt as `bad`
    says: an unknown encoding, a zero K, a detection without results ('' : none)."""
    types = codec.rclpy_types()
    height, width = image.shape[:2]
    header = codec.header_msg(types, stamp_ns, "soak_camera_optical_frame")
    img = codec.image_msg(types, image, header)
    info = codec.camera_info_msg(types, K, width, height, header)
    items = [("", "demo_object", T, 0.9) for T in poses]
    detections = codec.detections_msg(types, header, items)
    if bad == "encoding":
        img.encoding = "yuv422"
    elif bad == "zero_k":
        info.k = [0.0] * 9
    elif bad == "empty_results":
        detections.detections[0].results = []
    return img, info, detections


def main() -> int:
    checkpoint, duration_s, rate_hz, objects, warmup_s = (
        sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]),
    )  # fmt: skip
    model = load_mesh(resolve_path("package://attn6d_ros/models/demo_object.ply"))
    scenes = [_scene(model, objects, seed=k) for k in range(SCENES)]
    crowd = _scene(model, 40, seed=99)  # more than max_detections (32)
    node_proc = start_node({"checkpoint": checkpoint, "publish_tf": False, "min_score": 0.0})
    rclpy.init()
    node = rclpy.create_node("attn6d_soak_client")
    pub_image = node.create_publisher(Image, "image", qos_profile_sensor_data)
    pub_info = node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
    pub_detections = node.create_publisher(Detection3DArray, "detections", 10)
    diagnostics: dict[str, str] = {}

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if "attn6d_refiner" in status.name:
                diagnostics.clear()
                diagnostics.update({kv.key: kv.value for kv in status.values})

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    samples: list[tuple[float, float]] = []
    published = bad_frames = 0
    try:
        deadline = time.monotonic() + 180.0  # model load, warm-up, discovery
        while not diagnostics or pub_image.get_subscription_count() == 0:
            if time.monotonic() > deadline or node_proc.poll() is not None:
                raise RuntimeError("the node did not come up: " + exit_message(node_proc))
            rclpy.spin_once(node, timeout_sec=0.1)
        start = time.monotonic()
        next_sample = start
        kinds = ["encoding", "zero_k", "empty_results", "crowd"]
        while (now := time.monotonic()) - start < duration_s:
            if now >= next_sample:
                samples.append((round(now - start, 1), round(rss_mb(node_proc.pid), 1)))
                next_sample += SAMPLE_EVERY_S
            stamp_ns = node.get_clock().now().nanoseconds
            image, K, detections = scenes[published % SCENES]
            bad = (
                kinds[(published // BAD_EVERY) % len(kinds)] if published % BAD_EVERY == 0 else ""
            )
            if bad == "crowd":
                image, K, detections = crowd
            messages = _frame(stamp_ns, image, K, [T for _, T in detections], bad)
            for pub, msg in zip((pub_image, pub_info, pub_detections), messages, strict=True):
                pub.publish(msg)
            published += 1
            bad_frames += bool(bad)
            end = start + published / rate_hz
            while (left := end - time.monotonic()) > 0:
                rclpy.spin_once(node, timeout_sec=min(left, 0.05))
        samples.append((round(time.monotonic() - start, 1), round(rss_mb(node_proc.pid), 1)))
        rclpy.spin_once(node, timeout_sec=1.5)  # a last diagnostics message
    finally:
        node.destroy_node()
        rclpy.shutdown()
        if node_proc.poll() is None:
            node_proc.send_signal(signal.SIGINT)
            node_proc.wait(timeout=60)
    after = [rss for t, rss in samples if t >= warmup_s]
    growth = after[-1] - after[0]
    print(json.dumps({
        "duration_s": duration_s, "rate_hz": rate_hz, "objects": objects, "image": "640x480 rgb8",
        "frames_published": published, "bad_frames": bad_frames,
        "frames_processed": int(diagnostics.get("processed frames", "0")),
        "frames_dropped": int(diagnostics.get("dropped frames", "0")),
        "internal_errors": int(diagnostics.get("internal errors", "0")),
        "warmup_s": warmup_s, "rss_start_mb": samples[0][1], "rss_after_warmup_mb": after[0],
        "rss_end_mb": after[-1], "rss_max_after_warmup_mb": max(after),
        "growth_after_warmup_mb": round(growth, 1), "ok": growth < 50.0,
        "node_exit_code": node_proc.returncode, "rss_samples_s_mb": samples,
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
