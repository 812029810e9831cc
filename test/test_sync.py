"""The approximate-time synchronizer fallback keeps message_filters' Python semantics (sync.py docstring)."""

import time
from types import SimpleNamespace

import pytest

from attn6d_ros.ros import sync
from attn6d_ros.ros.sync import SimpleFilter, _FallbackApproximateTimeSynchronizer


def _msg(t: float, tag: str = "") -> SimpleNamespace:
    sec = int(t)
    stamp = SimpleNamespace(sec=sec, nanosec=round((t - sec) * 1e9))
    return SimpleNamespace(header=SimpleNamespace(stamp=stamp), tag=tag)


def _synchronizer(n: int = 2, queue_size: int = 10, slop: float = 0.02, **kwargs):
    inputs = [SimpleFilter() for _ in range(n)]
    synchronizer = _FallbackApproximateTimeSynchronizer(inputs, queue_size, slop, **kwargs)
    delivered: list[tuple] = []
    synchronizer.registerCallback(lambda *msgs: delivered.append(tuple(m.tag for m in msgs)))
    return inputs, synchronizer, delivered


def test_messages_within_slop_are_delivered_in_input_order() -> None:
    (a, b), _, delivered = _synchronizer()
    b.signalMessage(_msg(10.005, "b1"))  # the later input arrives first
    a.signalMessage(_msg(10.0, "a1"))
    assert delivered == [("a1", "b1")]


def test_spread_must_be_strictly_below_slop() -> None:
    (a, b), _, delivered = _synchronizer(slop=0.02)
    a.signalMessage(_msg(1.0, "a"))
    b.signalMessage(_msg(1.02, "b"))  # exactly the slop: message_filters does not match
    assert delivered == []
    b.signalMessage(_msg(1.0199, "b2"))
    assert delivered == [("a", "b2")]


def test_matched_messages_leave_the_queues_and_older_ones_stay() -> None:
    (a, b), synchronizer, delivered = _synchronizer()
    a.signalMessage(_msg(1.0, "a1"))
    a.signalMessage(_msg(2.0, "a2"))
    b.signalMessage(_msg(2.0, "b2"))
    assert delivered == [("a2", "b2")]
    assert list(synchronizer.queues[0]) == [1_000_000_000] and synchronizer.queues[1] == {}
    b.signalMessage(_msg(1.001, "b1"))  # a late partner of the older message still matches
    assert delivered == [("a2", "b2"), ("a1", "b1")]


def test_nearest_partner_wins() -> None:
    (a, b), _, delivered = _synchronizer(slop=0.05)
    b.signalMessage(_msg(5.03, "far"))
    b.signalMessage(_msg(5.01, "near"))
    a.signalMessage(_msg(5.0, "a"))
    assert delivered == [("a", "near")]


def test_queue_keeps_only_the_newest_queue_size_stamps() -> None:
    (a, b), synchronizer, delivered = _synchronizer(queue_size=3)
    for i in range(5):
        a.signalMessage(_msg(float(i), f"a{i}"))
    assert sorted(synchronizer.queues[0]) == [2_000_000_000, 3_000_000_000, 4_000_000_000]
    b.signalMessage(_msg(0.0, "b0"))  # its partner was evicted
    assert delivered == []


def test_same_stamp_replaces_the_queued_message() -> None:
    (a, b), _, delivered = _synchronizer()
    a.signalMessage(_msg(3.0, "old"))
    a.signalMessage(_msg(3.0, "new"))
    b.signalMessage(_msg(3.0, "b"))
    assert delivered == [("new", "b")]


def test_three_inputs_need_all_three() -> None:
    (image, info, detections), _, delivered = _synchronizer(n=3)
    image.signalMessage(_msg(7.0, "i"))
    detections.signalMessage(_msg(7.001, "d"))
    assert delivered == []
    info.signalMessage(_msg(7.0, "c"))
    assert delivered == [("i", "c", "d")]


def test_headerless_messages_are_refused_unless_allowed() -> None:
    (a, b), synchronizer, delivered = _synchronizer()
    a.signalMessage(SimpleNamespace(tag="x"))
    assert delivered == [] and all(not q for q in synchronizer.queues)
    (a, b), synchronizer, delivered = _synchronizer(allow_headerless=True, slop=5.0)
    a.signalMessage(SimpleNamespace(tag="x"))
    b.signalMessage(SimpleNamespace(tag="y"))
    assert delivered == [("x", "y")]


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="queue_size must be >= 1, got 0"):
        _FallbackApproximateTimeSynchronizer([SimpleFilter()], 0, 0.1)
    with pytest.raises(ValueError, match="slop must be > 0 seconds, got 0"):
        _FallbackApproximateTimeSynchronizer([SimpleFilter()], 1, 0)


def test_fallback_is_used_exactly_when_message_filters_is_missing() -> None:
    try:
        import message_filters  # noqa: F401
    except ImportError:
        assert not sync.USING_MESSAGE_FILTERS
        assert sync.ApproximateTimeSynchronizer is _FallbackApproximateTimeSynchronizer
    else:
        assert sync.USING_MESSAGE_FILTERS


@pytest.mark.ros
def test_fallback_subscriber_synchronizes_ros_topics(ros_domain: int) -> None:
    import rclpy
    from sensor_msgs.msg import CameraInfo, Image

    from attn6d_ros.ros.sync import _FallbackSubscriber

    rclpy.init()
    try:
        node = rclpy.create_node("attn6d_sync_test")
        pub_image = node.create_publisher(Image, "image", 10)
        pub_info = node.create_publisher(CameraInfo, "camera_info", 10)
        inputs = [
            _FallbackSubscriber(node, Image, "image", qos_profile=10),
            _FallbackSubscriber(node, CameraInfo, "camera_info", qos_profile=10),
        ]
        assert inputs[0].getTopic() == "/image"
        synchronizer = _FallbackApproximateTimeSynchronizer(inputs, 5, 0.01)
        pairs = []
        synchronizer.registerCallback(
            lambda i, c: pairs.append((i.header.frame_id, c.header.frame_id))
        )
        image, info = Image(), CameraInfo()
        image.header.stamp.sec = info.header.stamp.sec = 42
        image.header.frame_id, info.header.frame_id = "img", "info"
        deadline = time.monotonic() + 10.0
        while not pairs and time.monotonic() < deadline:
            pub_image.publish(image)
            pub_info.publish(info)
            rclpy.spin_once(node, timeout_sec=0.1)
        node.destroy_node()
    finally:
        rclpy.shutdown()
    assert pairs and pairs[0] == ("img", "info")
