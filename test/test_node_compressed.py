"""The node's image_transport parameter: `compressed` subscribes sensor_msgs/CompressedImage on the remapped
image topic plus /compressed (image_transport's name) and refines the decoded JPEG as the Refiner does."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from node_support import (
    FRAME,
    K_VGA,
    OBJECTS_FILE,
    Peer,
    header_msg,
    key_of,
    pose,
    refine_node,
    textured_image,
)

from attn6d_ros.ros import codec
from attn6d_ros.ros.codec import pose_to_matrix
from attn6d_ros.ros.compressed_image import compressed_to_rgb

pytestmark = pytest.mark.ros


_node = refine_node  # the in-process node (node_support)


def _compressed_msg(rgb: np.ndarray, t: float):
    return codec.compressed_image_msg(codec.rclpy_types(), rgb, header_msg(t), "jpeg")


def test_compressed_images_are_decoded_and_refined_like_the_refiner(
    ros: None, checkpoint: Path
) -> None:
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage

    from attn6d_ros.objects import load_objects
    from attn6d_ros.refiner import Refiner

    node = _node(checkpoint, image_transport="compressed")
    (image_sub,) = [s for s in node._inputs if s.sub.msg_type is CompressedImage]
    assert image_sub.sub.topic_name == "/image/compressed"
    peer = Peer()
    pub = peer.node.create_publisher(
        CompressedImage,
        "image/compressed",
        QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE),
    )
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(peer.node)
    assert peer.spin_until(lambda: pub.get_subscription_count() > 0, 30, executor)
    rgb, t, T = textured_image(), time.time(), pose(0.02)
    msg = _compressed_msg(rgb, t)
    pub.publish(msg)
    # camera_info and detections from the peer (its raw image would go to 'image', unread now).
    from node_support import camera_info_msg, detections_msg

    peer.pub_info.publish(camera_info_msg(K_VGA, 640, 480, t))
    peer.pub_detections.publish(detections_msg(t, [("", "demo_object", T)]))
    assert peer.spin_until(lambda: peer.details(t) is not None, 30, executor), "no refined/details"
    executor.shutdown()
    node.destroy_node()
    details = peer.details(t)
    assert details.header.frame_id == FRAME
    assert key_of(t) == codec.stamp_ns(details.header)

    refiner = Refiner.from_checkpoint(checkpoint, "cpu")
    refiner.add_object("demo_object", load_objects(OBJECTS_FILE)["demo_object"])
    decoded = compressed_to_rgb(msg)
    # align is on by default: the node aligns after the stage.
    (expected,) = refiner.refine(decoded, K_VGA, [("demo_object", T)], stages=1, align=True)
    refiner.renderer.close()
    (refinement,) = details.refinements
    assert refinement.error == ""
    assert np.allclose(pose_to_matrix(refinement.refined_pose), expected.T, atol=1e-9)
    assert refinement.score == pytest.approx(expected.score, abs=1e-6)


def test_compressed_topic_follows_the_image_remapping(ros: None, checkpoint: Path) -> None:
    from sensor_msgs.msg import CompressedImage, Image

    node = _node(
        checkpoint, ["--ros-args", "-r", "image:=/cam/image_raw"], image_transport="compressed"
    )
    topics = {s.sub.topic_name: s.sub.msg_type for s in node._inputs}
    node.destroy_node()
    assert topics["/cam/image_raw/compressed"] is CompressedImage
    node = _node(checkpoint, ["--ros-args", "-r", "image:=/cam/image_raw"])
    topics = {s.sub.topic_name: s.sub.msg_type for s in node._inputs}
    node.destroy_node()
    assert topics["/cam/image_raw"] is Image


def test_an_unknown_image_transport_is_refused(ros: None, checkpoint: Path) -> None:
    from attn6d_ros.ros.params import ParameterError

    with pytest.raises(ParameterError, match="parameter 'image_transport' must be one of"):
        _node(checkpoint, image_transport="theora")
