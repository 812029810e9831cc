"""Broadcasting transforms on /tf: tf2_ros's TransformBroadcaster when importable, else a fallback.

The fallback does what tf2_ros.TransformBroadcaster does: it publishes tf2_msgs/TFMessage on the absolute
topic ``/tf`` (whatever the node's namespace) with TF's QoS (reliable, volatile, keep-last 100), and
`sendTransform` takes one geometry_msgs/TransformStamped or a list of them, sent as one message. A real tf2
listener cannot tell the two apart (the TFMessage type hash matches upstream, test_interfaces.py).
"""

from __future__ import annotations

from typing import Any

DEFAULT_TF_TOPIC = "/tf"
TF_QOS_DEPTH = 100  # tf2_ros: QoSProfile(depth=100), reliable, volatile

try:
    from tf2_ros import TransformBroadcaster

    USING_TF2_ROS = True
except ImportError:
    USING_TF2_ROS = False


class _FallbackTransformBroadcaster:
    """Publishes transforms on /tf.

    Args:
        node: the node that owns the publisher.
        qos: a QoSProfile or depth; TF's profile by default.
    """

    def __init__(self, node: Any, qos: Any = None) -> None:
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from tf2_msgs.msg import TFMessage

        if qos is None:
            qos = QoSProfile(
                depth=TF_QOS_DEPTH,
                history=HistoryPolicy.KEEP_LAST,
                reliability=ReliabilityPolicy.RELIABLE,
                durability=DurabilityPolicy.VOLATILE,
            )
        self._message_type = TFMessage
        self.pub_tf = node.create_publisher(TFMessage, DEFAULT_TF_TOPIC, qos)

    def sendTransform(self, transform: Any) -> None:
        """Publishes one TransformStamped or a list of them, as one TFMessage."""
        transforms = list(transform) if isinstance(transform, list | tuple) else [transform]
        self.pub_tf.publish(self._message_type(transforms=transforms))


if not USING_TF2_ROS:
    TransformBroadcaster = _FallbackTransformBroadcaster
