"""Our interfaces and the test-only vision_msgs / tf2_msgs travel between two processes over loopback."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

HERE = Path(__file__).parent

# REP 2011 type hash of upstream ROS 2 tf2_msgs/TFMessage (environment.md §5): real tf listeners match.
UPSTREAM_TF_MESSAGE_HASH = (
    "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"
)


def test_three_message_types_cross_process(ros_domain: int) -> None:
    import rclpy
    from attn6d_ros.msg import RefinementArray
    from tf2_msgs.msg import TFMessage
    from vision_msgs.msg import Detection3DArray

    peer = subprocess.Popen([sys.executable, str(HERE / "ros_peer.py"), "20"])
    received: dict[str, object] = {}
    rclpy.init()
    try:
        node = rclpy.create_node("attn6d_test_listener")
        node.create_subscription(
            RefinementArray, "peer/details", lambda m: received.setdefault("d", m), 10
        )
        node.create_subscription(
            Detection3DArray, "peer/detections", lambda m: received.setdefault("v", m), 10
        )
        node.create_subscription(TFMessage, "/tf", lambda m: received.setdefault("t", m), 10)
        deadline = time.monotonic() + 20.0
        while len(received) < 3 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        node.destroy_node()
    finally:
        rclpy.shutdown()
        peer.terminate()
        peer.wait(timeout=10)
    assert set(received) == {"d", "v", "t"}, f"received only {sorted(received)}"
    details, detections, tf = received["d"], received["v"], received["t"]
    assert details.refinements[0].instance_id == "ape_1"
    assert details.refinements[0].converged and len(details.refinements[0].stage_poses) == 2
    assert details.latency_ms == pytest.approx(12.5)
    assert detections.detections[0].results[0].hypothesis.class_id == "ape"
    assert detections.detections[0].id == "obj-7"
    assert tf.transforms[0].child_frame_id == "ape_1"


def test_test_only_tf_message_matches_upstream_type_hash() -> None:
    share = Path(sys.prefix) / "share" / "tf2_msgs" / "msg" / "TFMessage.json"
    description = json.loads(share.read_text())
    hashes = {entry["type_name"]: entry["hash_string"] for entry in description["type_hashes"]}
    assert hashes["tf2_msgs/msg/TFMessage"] == UPSTREAM_TF_MESSAGE_HASH
