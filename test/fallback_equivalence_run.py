"""Runs frames through the refinement node in this process and saves what it published (for
test_fallback_equivalence.py). Usage: fallback_equivalence_run.py real|fallback CHECKPOINT OUT.npz

`fallback` hides message_filters, tf2_ros and cv_bridge before attn6d_ros is imported, as in an installation
without them, so the node takes attn6d_ros.ros.sync, attn6d_ros.ros.tf_publisher and the numpy image decoder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HIDDEN = ("message_filters", "tf2_ros", "cv_bridge")
# (encoding, row padding in bytes, big-endian): every encoding the node accepts, with and without padding
# (whole pixels and not), both byte orders of 16-bit data.
FRAMES = [
    ("rgb8", 0, False),
    ("bgr8", 3, False),
    ("rgba8", 8, False),
    ("bgra8", 5, False),
    ("mono8", 0, False),
    ("rgb16", 0, False),
    ("bgr16", 12, True),
    ("rgba16", 0, True),
    ("bgra16", 8, False),
    ("mono16", 2, False),
]
WIDTH, HEIGHT = 320, 240
K = np.array([[250.0, 0.0, 159.5], [0.0, 250.0, 119.5], [0.0, 0.0, 1.0]])


def main(mode: str, checkpoint: str, out: str) -> int:
    if mode == "fallback":
        for name in HIDDEN:
            sys.modules[name] = None  # `import name` now raises ImportError
    import rclpy
    from image_encodings import encode
    from node_support import Peer, base_params, header_msg, key_of, pose, textured_image
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from attn6d_ros.node import RefineNode
    from attn6d_ros.ros import codec, sync, tf_publisher
    from attn6d_ros.ros.codec import pose_to_matrix

    rclpy.init()
    params = base_params(Path(checkpoint))
    node = RefineNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    peer = Peer()
    peer.subscribe_overlay()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(peer.node)
    if not _match(peer, executor):
        raise SystemExit("the peer and the node did not match")
    saved: dict[str, np.ndarray] = {
        "implementations": np.array(
            [sync.USING_MESSAGE_FILTERS, tf_publisher.USING_TF2_ROS, codec.USING_CV_BRIDGE]
        )
    }
    for index, (encoding, pad_bytes, bigendian) in enumerate(FRAMES):
        t = 1_700_000_000.0 + index * 0.5
        rgb_u8 = textured_image(WIDTH, HEIGHT, seed=index)
        noise = np.random.default_rng(index).integers(0, 256, rgb_u8.shape, dtype=np.uint16)
        image = encode(rgb_u8.astype(np.uint16) * 256 + noise, encoding,
                       pad_bytes=pad_bytes, bigendian=bigendian)  # fmt: skip
        image.header = header_msg(t)  # camera_optical_frame
        items = [("a", "demo_object", pose(-0.03, z=0.5)), ("b", "demo_object", pose(0.04, z=0.6))]
        peer.publish_frame(rgb_u8, K, t, items, image=image)
        done = peer.spin_until(
            lambda t=t: peer.details(t) is not None and key_of(t) in peer.overlays, 120.0, executor
        )
        if not done:
            raise SystemExit(f"frame {index} ({encoding}) got no refined/details and overlay")
        peer.spin_until(lambda: False, 0.3, executor)  # the frame's TF
        details = peer.details(t)
        errors = [r.error for r in details.refinements if r.error]
        if errors:
            raise SystemExit(f"frame {index} ({encoding}): {errors}")
        (array,) = peer.outputs["refined/detections"][key_of(t)]
        saved[f"poses_{index}"] = np.array(
            [pose_to_matrix(d.results[0].pose.pose) for d in array.detections]
        )
        saved[f"scores_{index}"] = np.array([r.score for r in details.refinements])
        (tf,) = [m for m in peer.tf if m.transforms[0].header.stamp == details.header.stamp]
        saved[f"tf_{index}"] = np.array(
            [[x.transform.translation.x, x.transform.translation.y, x.transform.translation.z,
              x.transform.rotation.x, x.transform.rotation.y, x.transform.rotation.z,
              x.transform.rotation.w] for x in tf.transforms]
        )  # fmt: skip
        saved[f"tf_children_{index}"] = np.array([x.child_frame_id for x in tf.transforms])
        saved[f"decoded_{index}"] = codec.image_to_rgb(image)
        overlay = peer.overlays[key_of(t)]
        saved[f"overlay_{index}"] = np.frombuffer(bytes(overlay.data), np.uint8).reshape(
            overlay.height, overlay.step
        )
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown()
    np.savez(out, **saved)
    return 0


def _match(peer, executor) -> bool:
    """Spins until the node and the peer see each other's topics both ways (discovery)."""
    subscriptions = list(peer.node.subscriptions)

    def matched() -> bool:
        inputs = (peer.pub_image, peer.pub_info, peer.pub_detections)
        return all(p.get_subscription_count() > 0 for p in inputs) and all(
            s.get_publisher_count() > 0 for s in subscriptions
        )

    return peer.spin_until(matched, 60.0, executor)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
