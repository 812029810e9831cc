"""The node's inputs: image (raw or image_transport's compressed), camera_info and detections subscribed with
their QoS parameters, and the two approximate-time synchronizers over them (sync.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from vision_msgs.msg import Detection3DArray

from attn6d_ros.ros import middleware, sync
from attn6d_ros.ros.params import NodeConfig


@dataclass
class Inputs:
    """subscribers: image, camera_info, detections (message_filters-style, `.sub` is the subscription);
    frames: synchronizes all three; image_pairs: image and camera_info alone (tracking.wait_s)."""

    subscribers: list[Any]
    frames: Any
    image_pairs: Any


def subscribe_inputs(
    node: Node,
    cfg: NodeConfig,
    on_message: Callable[[str, Any], None],
    on_frame: Callable[[Any, Any, Any], None],
    on_image_pair: Callable[[Any, Any], None],
) -> Inputs:
    """Subscribes `node` to its inputs (relative topics ``image``, ``camera_info``, ``detections``).

    Args:
        on_message: called with ("image" | "camera_info" | "detections", message) for every message.
        on_frame: called with (image, camera_info, detections) for every synchronized frame.
        on_image_pair: called with (image, camera_info) for every synchronized pair.
    """
    image_qos = middleware.input_qos(cfg.image_reliability, cfg.image_depth)
    detections_qos = middleware.input_qos(cfg.detections_reliability, cfg.detections_depth)
    # image_transport's compressed publisher adds /compressed to the (remapped) image topic.
    image_type, image_topic = Image, "image"
    if cfg.image_transport == "compressed":
        image_type = CompressedImage
        image_topic = node.resolve_topic_name("image") + "/compressed"
    subscribers = []
    for kind, topic, msg_type, qos, parameter in (
        ("image", image_topic, image_type, image_qos, "qos.image.reliability"),
        ("camera_info", "camera_info", CameraInfo, image_qos, "qos.image.reliability"),
        ("detections", "detections", Detection3DArray, detections_qos, "qos.detections.reliability"),
    ):  # fmt: skip
        events = SubscriptionEventCallbacks(
            incompatible_qos=lambda info, k=kind, p=parameter: node.get_logger().warning(
                f"a publisher on {k!r} offers a QoS incompatible with this subscription (policy "
                f"{info.last_policy_kind}); nothing from it arrives. Check {p!r} (best_effort "
                "matches every publisher)"
            )
        )
        subscriber = sync.Subscriber(
            node, msg_type, topic, qos_profile=qos, event_callbacks=events
        )
        subscriber.registerCallback(lambda msg, k=kind: on_message(k, msg))
        subscribers.append(subscriber)
    frames = sync.ApproximateTimeSynchronizer(subscribers, cfg.sync_queue_size, cfg.sync_slop)
    frames.registerCallback(on_frame)
    image_pairs = sync.ApproximateTimeSynchronizer(
        subscribers[:2], cfg.sync_queue_size, cfg.sync_slop
    )
    image_pairs.registerCallback(on_image_pair)
    node.get_logger().info(
        f"subscribed: {[s.sub.topic_name for s in subscribers]}; image QoS {cfg.image_reliability} "
        f"depth {cfg.image_depth}, detections QoS {cfg.detections_reliability} depth "
        f"{cfg.detections_depth}; sync queue {cfg.sync_queue_size}, slop {cfg.sync_slop} s"
    )
    return Inputs(subscribers, frames, image_pairs)
