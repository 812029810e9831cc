"""The node's ROS layer against the real upstream packages (../shared/upstream, installed by `make setup`):
message_filters, tf2_ros and cv_bridge do what our fallbacks do, and the test copies of vision_msgs and
tf2_msgs match the real definitions. Skipped, saying so, where the venv has no upstream packages (a user's
clone); test_fallback_equivalence.py runs whole frames through the node both ways."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from image_encodings import encode, random_rgb16
from upstream_support import REPO, UPSTREAM_DIR, require

from attn6d_ros.ros import codec, sync, tf_publisher
from attn6d_ros.ros.codec import ENCODINGS

TEST_INTERFACES = REPO / "test" / "interfaces"


# -- message_filters ----------------------------------------------------------------------------------------


class _Stamped:
    """A message with a std_msgs/Header (what both synchronizers read) and a name to recognise it by."""

    def __init__(self, name: str, stamp_ns: int) -> None:
        self.name = name
        self.header = codec.header_msg(codec.rclpy_types(), stamp_ns, "")


def _arrivals(seed: int) -> list[tuple[int, int]]:
    """(input, stamp ns) of three 30 Hz streams with jitter, drops, duplicates and reordering: what camera,
    camera_info and a detector deliver."""
    rng = np.random.default_rng(seed)
    events = []
    for frame in range(150):
        base = 1_700_000_000_000_000_000 + frame * 33_333_333
        for source in range(3):
            if rng.random() < 0.1:
                continue  # dropped
            jitter = int(rng.normal(0, 4e6)) if source == 2 else int(rng.normal(0, 1e6))
            arrival = frame + rng.uniform(0, 2.5 if source == 2 else 0.3)  # the detector lags
            events.append((arrival, source, base + jitter))
            if rng.random() < 0.03:
                events.append((arrival + 0.1, source, base + jitter))  # repeated stamp
    return [(source, stamp) for _, source, stamp in sorted(events)]


def _deliveries(filter_class, synchronizer_class, arrivals, queue_size: int, slop: float) -> list:
    inputs = [filter_class() for _ in range(3)]
    synchronizer = synchronizer_class(inputs, queue_size, slop)
    delivered = []
    synchronizer.registerCallback(lambda *msgs: delivered.append(tuple(m.name for m in msgs)))
    for index, (source, stamp) in enumerate(arrivals):
        inputs[source].signalMessage(_Stamped(f"{source}:{index}", stamp))
    return delivered


@pytest.mark.parametrize(
    ("seed", "queue_size", "slop"), [(0, 10, 0.01), (1, 3, 0.02), (2, 30, 0.005)]
)
def test_real_message_filters_delivers_the_sets_the_fallback_delivers(
    seed: int, queue_size: int, slop: float
) -> None:
    message_filters = require("message_filters")
    assert sync.USING_MESSAGE_FILTERS
    assert sync.ApproximateTimeSynchronizer is message_filters.ApproximateTimeSynchronizer
    arrivals = _arrivals(seed)
    real = _deliveries(
        message_filters.SimpleFilter, message_filters.ApproximateTimeSynchronizer, arrivals,
        queue_size, slop,
    )  # fmt: skip
    fallback = _deliveries(
        sync.SimpleFilter, sync._FallbackApproximateTimeSynchronizer, arrivals, queue_size, slop
    )
    assert len(real) > 50  # the streams do match most of the time: the comparison is not vacuous
    assert fallback == real


# -- tf2_ros ------------------------------------------------------------------------------------------------


def _transform(child: str, T: np.ndarray, stamp):
    from geometry_msgs.msg import TransformStamped

    from attn6d_ros.geometry import pose_to_quat_xyzw

    q_xyzw, t_xyz = pose_to_quat_xyzw(T)
    msg = TransformStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = "camera_optical_frame"
    msg.child_frame_id = child
    tr, ro = msg.transform.translation, msg.transform.rotation
    tr.x, tr.y, tr.z = (float(v) for v in t_xyz)
    ro.x, ro.y, ro.z, ro.w = (float(v) for v in q_xyzw)
    return msg


@pytest.mark.ros
def test_real_tf2_listener_gets_the_same_transforms_from_both_broadcasters(
    ros_domain: int,
) -> None:
    tf2_ros = require("tf2_ros_py")
    import rclpy
    from rclpy.time import Time

    from attn6d_ros.ros.codec import pose_to_matrix

    assert tf_publisher.USING_TF2_ROS
    assert tf_publisher.TransformBroadcaster is tf2_ros.TransformBroadcaster
    rclpy.init()
    try:
        node = rclpy.create_node("attn6d_tf_test")
        real = tf2_ros.TransformBroadcaster(node)
        fallback = tf_publisher._FallbackTransformBroadcaster(node)
        assert real.pub_tf.topic_name == fallback.pub_tf.topic_name == "/tf"
        qos = [b.pub_tf.qos_profile for b in (real, fallback)]
        for field in ("depth", "history", "reliability", "durability"):
            assert getattr(qos[0], field) == getattr(qos[1], field), field

        buffer = tf2_ros.Buffer()
        listener = tf2_ros.TransformListener(buffer, node, spin_thread=False)
        stamp = node.get_clock().now().to_msg()
        T_real = np.eye(4)
        T_real[:3, :3] = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
        T_real[:3, 3] = [0.1, -0.2, 0.7]
        T_fallback = T_real.copy()
        T_fallback[:3, 3] = [-0.3, 0.05, 1.2]
        deadline = time.monotonic() + 20.0
        found = False
        while time.monotonic() < deadline and not found:
            real.sendTransform(_transform("obj_real", T_real, stamp))
            fallback.sendTransform([_transform("obj_fallback", T_fallback, stamp)])
            rclpy.spin_once(node, timeout_sec=0.1)
            found = all(
                buffer.can_transform("camera_optical_frame", child, Time.from_msg(stamp))
                for child in ("obj_real", "obj_fallback")
            )
        assert found, "the real tf2 listener did not receive both transforms"
        for child, T in (("obj_real", T_real), ("obj_fallback", T_fallback)):
            got = buffer.lookup_transform("camera_optical_frame", child, Time.from_msg(stamp))
            tr, ro = got.transform.translation, got.transform.rotation
            from geometry_msgs.msg import Pose

            pose = Pose()
            pose.position.x, pose.position.y, pose.position.z = tr.x, tr.y, tr.z
            pose.orientation = ro
            assert np.allclose(pose_to_matrix(pose), T, atol=1e-12), child
        del listener
        node.destroy_node()
    finally:
        rclpy.shutdown()


# -- cv_bridge ----------------------------------------------------------------------------------------------


def _pixel_bytes(encoding: str) -> int:
    channels, depth, _ = ENCODINGS[encoding]
    return channels * depth


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_real_cv_bridge_decodes_every_accepted_encoding_like_our_decoder(encoding: str) -> None:
    """Where cv_bridge reads a layout correctly (rows of whole pixels, little-endian 16-bit data), its
    decoding is ours exactly: channel order, alpha, mono, and 16 -> 8 bit rounding."""
    require("cv_bridge")
    assert codec.USING_CV_BRIDGE
    rgb16 = random_rgb16(7, 9, seed=len(encoding))
    for pad_pixels in (0, 2):
        msg = encode(rgb16, encoding, pad_bytes=pad_pixels * _pixel_bytes(encoding))
        bridge = np.asarray(codec._BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
        ours = codec._decode_numpy(msg, *codec.check_image_message(msg))
        assert bridge.dtype == np.uint8 and bridge.shape == (7, 9, 3)
        np.testing.assert_array_equal(bridge, ours, err_msg=f"{encoding}, {pad_pixels} px padding")


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_node_decodes_every_layout_the_same_with_cv_bridge_as_without(encoding: str) -> None:
    """image_to_rgb with cv_bridge installed equals the numpy decoder on every layout the node accepts,
    including row padding that is not whole pixels and big-endian 16-bit data, which cv_bridge's Python
    half reads wrongly or fails on with NumPy 2 (ndarray.newbyteorder is gone)."""
    require("cv_bridge")
    rgb16 = random_rgb16(6, 11, seed=7)
    for pad_bytes in (0, 3, _pixel_bytes(encoding)):
        for bigendian in (False, True):
            msg = encode(rgb16, encoding, pad_bytes=pad_bytes, bigendian=bigendian)
            expected = codec._decode_numpy(msg, *codec.check_image_message(msg))
            np.testing.assert_array_equal(
                codec.image_to_rgb(msg),
                expected,
                err_msg=f"{encoding}, step padding {pad_bytes} bytes, big-endian {bigendian}",
            )


def test_real_cv_bridge_encodes_rgb8_as_the_fallback_does(monkeypatch: pytest.MonkeyPatch) -> None:
    require("cv_bridge")

    rgb = (random_rgb16(5, 8, seed=3) >> 8).astype(np.uint8)
    header = codec.header_msg(codec.rclpy_types(), 12_000_000_345, "cam")
    real = codec.rgb_to_image(rgb, header)
    assert codec.USING_CV_BRIDGE
    fields = ("header", "height", "width", "encoding", "is_bigendian", "step")
    monkeypatch.setattr(codec, "_BRIDGE", None)  # the numpy encoder, as without cv_bridge
    expected = codec.rgb_to_image(rgb, header)
    assert {f: getattr(real, f) for f in fields} == {f: getattr(expected, f) for f in fields}
    assert bytes(real.data) == bytes(expected.data)


# -- vision_msgs and tf2_msgs: the test copies against the real definitions ----------------------------------


def _fields(path) -> list[str]:
    lines = (re.sub(r"#.*", "", line).split() for line in path.read_text().splitlines())
    return [" ".join(words) for words in lines if words]


@pytest.mark.parametrize("package", ["vision_msgs", "tf2_msgs"])
def test_test_only_interface_copies_match_the_upstream_definitions(package: str) -> None:
    """Without ../shared/upstream, setup builds test/interfaces; it must be the real message layout."""
    if not UPSTREAM_DIR.is_dir():
        pytest.skip(
            f"{UPSTREAM_DIR} not found (a user's clone): nothing to compare the copies with"
        )
    upstream = {"vision_msgs": "vision_msgs/vision_msgs", "tf2_msgs": "geometry2/tf2_msgs"}[
        package
    ]
    copies = sorted((TEST_INTERFACES / package).glob("*/*.*"))
    copies = [c for c in copies if c.suffix in (".msg", ".srv", ".action")]
    assert copies, f"no interface files under {TEST_INTERFACES / package}"
    for copy in copies:
        real = UPSTREAM_DIR / upstream / copy.parent.name / copy.name
        assert real.is_file(), f"{copy.name} has no upstream counterpart at {real}"
        assert _fields(copy) == _fields(real), copy.name
