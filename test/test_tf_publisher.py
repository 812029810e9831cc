"""The /tf broadcaster fallback publishes like tf2_ros: absolute /tf, TF's QoS, one message per call."""

import time

import pytest

from attn6d_ros.ros import tf_publisher

pytestmark = pytest.mark.ros


def test_fallback_is_used_exactly_when_tf2_ros_is_missing() -> None:
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        assert not tf_publisher.USING_TF2_ROS
        assert tf_publisher.TransformBroadcaster is tf_publisher._FallbackTransformBroadcaster
    else:
        assert tf_publisher.USING_TF2_ROS


def test_fallback_broadcaster_publishes_on_absolute_tf_with_tf_qos(ros_domain: int) -> None:
    import rclpy
    from geometry_msgs.msg import TransformStamped
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from tf2_msgs.msg import TFMessage

    rclpy.init()
    try:
        node = rclpy.create_node("broadcaster", namespace="/robot1")  # /tf ignores the namespace
        broadcaster = tf_publisher._FallbackTransformBroadcaster(node)
        listener = rclpy.create_node("listener")
        received = []
        # A reliable, volatile listener, as tf2_ros's TransformListener subscribes to /tf.
        listener.create_subscription(
            TFMessage,
            "/tf",
            received.append,
            QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE),
        )
        (info,) = node.get_publishers_info_by_topic("/tf")
        assert info.qos_profile.reliability == ReliabilityPolicy.RELIABLE
        assert info.qos_profile.durability == DurabilityPolicy.VOLATILE
        assert (
            broadcaster.pub_tf.qos_profile.depth == tf_publisher.TF_QOS_DEPTH
        )  # not in graph info
        transforms = []
        for name in ("a", "b"):
            t = TransformStamped(child_frame_id=name)
            t.header.frame_id = "cam"
            t.transform.rotation.w = 1.0
            transforms.append(t)
        deadline = time.monotonic() + 10.0
        while not received and time.monotonic() < deadline:
            broadcaster.sendTransform(transforms)  # a list: one message
            broadcaster.sendTransform(transforms[0])  # one transform
            for n in (node, listener):
                rclpy.spin_once(n, timeout_sec=0.05)
        for _ in range(5):
            rclpy.spin_once(listener, timeout_sec=0.05)
        node.destroy_node()
        listener.destroy_node()
    finally:
        rclpy.shutdown()
    assert [t.child_frame_id for t in received[0].transforms] == ["a", "b"]
    assert [t.child_frame_id for t in received[1].transforms] == ["a"]
