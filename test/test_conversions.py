"""Message <-> numpy conversions: the numpy image decoder (cv_bridge fallback), CameraInfo checks, poses,
Detection3DArray parsing and per-frame instance names."""

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg")

from geometry_msgs.msg import Pose
from node_support import FRAME, K_VGA, camera_info_msg, detections_msg, pose
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from attn6d_ros.ros import codec
from attn6d_ros.ros.codec import (
    _decode_numpy,
    camera_intrinsics,
    check_image_message,
    image_to_rgb,
    instance_names,
    parse_detections,
    pose_msg,
    pose_to_matrix,
    rclpy_types,
    rgb_to_image,
    transform_msg,
)

pytestmark = pytest.mark.ros


def _raw_image(
    pixels: np.ndarray, encoding: str, *, pad: int = 0, bigendian: bool = False
) -> Image:
    """An Image with `pad` junk bytes at the end of every row (step > width * bytes per pixel)."""
    height, width = pixels.shape[:2]
    if pixels.dtype == np.uint16:
        pixels = pixels.astype(">u2" if bigendian else "<u2")
    rows = pixels.reshape(height, -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((height, pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=int(bigendian))
    msg.step = padded.shape[1]
    msg.data = padded.tobytes()
    return msg


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)


# -- images ------------------------------------------------------------------------------------------
# The numpy path is the fallback; calling _decode_numpy directly keeps an installed cv_bridge from hiding it.


def _decode(msg: Image) -> np.ndarray:
    return _decode_numpy(msg, *check_image_message(msg))


@pytest.mark.parametrize("pad", [0, 3])
def test_rgb8_and_bgr8_decode_to_the_same_rgb_with_row_padding(rgb: np.ndarray, pad: int) -> None:
    assert np.array_equal(_decode(_raw_image(rgb, "rgb8", pad=pad)), rgb)
    assert np.array_equal(
        _decode(_raw_image(np.ascontiguousarray(rgb[:, :, ::-1]), "bgr8", pad=pad)), rgb
    )


def test_alpha_is_dropped_and_channel_order_honoured(rgb: np.ndarray) -> None:
    alpha = np.full((*rgb.shape[:2], 1), 200, np.uint8)
    rgba = np.concatenate([rgb, alpha], axis=2)
    bgra = np.concatenate([rgb[:, :, ::-1], alpha], axis=2)
    assert np.array_equal(_decode(_raw_image(rgba, "rgba8", pad=2)), rgb)
    assert np.array_equal(_decode(_raw_image(bgra, "bgra8", pad=1)), rgb)


def test_mono8_is_replicated_to_three_channels() -> None:
    gray = np.arange(35, dtype=np.uint8).reshape(5, 7, 1)
    out = _decode(_raw_image(gray, "mono8", pad=1))
    assert out.shape == (5, 7, 3) and np.array_equal(out[:, :, 1], gray[:, :, 0])


@pytest.mark.parametrize("bigendian", [False, True])
def test_16_bit_data_honours_is_bigendian(rgb: np.ndarray, bigendian: bool) -> None:
    # v * 257 maps 8 bits onto 16 exactly (255 -> 65535), so decoding must give v back; a wrong byte order
    # would turn 0x0101 * v into byte-swapped garbage for most v.
    # +3 checks rounding to the nearest 8-bit value rather than taking the high byte only.
    wide = np.minimum(rgb.astype(np.uint32) * 257 + 3, 65535).astype(np.uint16)
    out = _decode(_raw_image(wide, "rgb16", pad=2, bigendian=bigendian))
    assert np.array_equal(out, rgb)


def test_decoded_image_does_not_share_memory_with_the_message(rgb: np.ndarray) -> None:
    msg = _raw_image(rgb, "rgb8")
    out = image_to_rgb(msg)
    out[:] = 0
    assert np.array_equal(image_to_rgb(msg), rgb)


def test_unknown_encoding_names_field_and_value(rgb: np.ndarray) -> None:
    msg = _raw_image(rgb, "rgb8")
    msg.encoding = "yuv422"
    with pytest.raises(ValueError, match=r"image\.encoding 'yuv422' is not supported"):
        image_to_rgb(msg)


def test_step_and_data_length_are_checked(rgb: np.ndarray) -> None:
    msg = _raw_image(rgb, "rgb8")
    msg.step = 20  # < 7 px * 3
    with pytest.raises(ValueError, match=r"image\.step 20 is smaller than .* 21"):
        image_to_rgb(msg)
    msg = _raw_image(rgb, "rgb8")
    msg.data = msg.data[:-1]
    with pytest.raises(ValueError, match=r"image\.data has 104 bytes; .* 105 expected"):
        image_to_rgb(msg)


def test_rgb_to_image_round_trips_with_the_header(rgb: np.ndarray) -> None:
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = rgb_to_image(rgb, header)
    assert (msg.encoding, msg.step, msg.header.frame_id, msg.header.stamp.nanosec) == (
        "rgb8",
        21,
        "cam",
        345,
    )
    assert np.array_equal(image_to_rgb(msg), rgb)


def test_numpy_converter_is_used_without_cv_bridge() -> None:
    try:
        import cv_bridge  # noqa: F401
    except ImportError:
        assert codec.USING_CV_BRIDGE is False
    else:
        assert codec.USING_CV_BRIDGE is True


# -- camera_info ---------------------------------------------------------------------------------------------


def test_camera_intrinsics_accepts_a_matching_camera_info() -> None:
    intrinsics = camera_intrinsics(camera_info_msg(K_VGA, 640, 480, 1.0), 640, 480)
    assert (
        np.allclose(intrinsics.K, K_VGA)
        and not intrinsics.distorted
        and not intrinsics.size_unchecked
    )


def test_k_all_zeros_is_rejected_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"camera_info\.k is all zeros"):
        camera_intrinsics(camera_info_msg(np.zeros((3, 3)), 640, 480, 1.0), 640, 480)


def test_non_pinhole_k_is_rejected_with_its_values() -> None:
    K = K_VGA.copy()
    K[0, 0] = -5.0
    with pytest.raises(
        ValueError, match=r"camera_info\.k focal lengths must be > 0, got fx=-5\.0"
    ):
        camera_intrinsics(camera_info_msg(K, 640, 480, 1.0), 640, 480)


def test_size_mismatch_names_both_sizes() -> None:
    with pytest.raises(
        ValueError, match=r"image is 320x240 but camera_info\.width x height is 640x480"
    ):
        camera_intrinsics(camera_info_msg(K_VGA, 640, 480, 1.0), 320, 240)


def test_binning_and_roi_give_the_k_of_the_received_image() -> None:
    info = camera_info_msg(K_VGA, 640, 480, 1.0)
    info.binning_x = info.binning_y = 2
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 100, 40, 400, 300
    K = camera_intrinsics(info, 200, 150).K
    # A point at pixel (u, v) of the full image is at ((u - 100) / 2, (v - 40) / 2) in the binned ROI image.
    assert np.allclose(
        K, [[250.0, 0.0, (319.5 - 100) / 2], [0.0, 250.0, (239.5 - 40) / 2], [0, 0, 1]]
    )


def test_distortion_and_missing_size_are_flagged() -> None:
    info = camera_info_msg(K_VGA, 0, 0, 1.0)
    info.d = [0.1, 0.0, 0.0, 0.0, 0.0]
    intrinsics = camera_intrinsics(info, 640, 480)
    assert intrinsics.distorted and intrinsics.size_unchecked


# -- poses ---------------------------------------------------------------------------------------------------


def test_pose_round_trip_and_quaternion_order() -> None:
    T = pose(0.1, -0.2, 0.7, yaw_deg=90.0)
    msg = pose_msg(rclpy_types(), T)
    # 90° about z: q = (0, 0, sin 45°, cos 45°) in x, y, z, w; a w-first mix-up would put 0.707 in x.
    assert (msg.orientation.x, msg.orientation.y) == (0.0, 0.0)
    assert msg.orientation.z == pytest.approx(np.sqrt(0.5)) and msg.orientation.w == pytest.approx(
        np.sqrt(0.5)
    )
    assert np.allclose(pose_to_matrix(msg), T, atol=1e-12)
    transform = transform_msg(rclpy_types(), T)
    assert transform.translation.z == pytest.approx(0.7) and transform.rotation.z == pytest.approx(
        np.sqrt(0.5)
    )


def test_pose_to_matrix_normalises_the_quaternion() -> None:
    msg = Pose()
    msg.orientation.z, msg.orientation.w = 2.0, 2.0
    R = pose_to_matrix(msg)[:3, :3]
    assert np.allclose(R @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0])  # 90° about z maps x to y


@pytest.mark.parametrize(
    ("quaternion", "message"),
    [
        ((0.0, 0.0, 0.0, 0.0), r"orientation \(x, y, z, w\) has zero norm"),
        (
            (float("nan"), 0.0, 0.0, 1.0),
            r"orientation \(x, y, z, w\) has non-finite components: \[nan",
        ),
        (
            (0.0, float("inf"), 0.0, 1.0),
            r"orientation \(x, y, z, w\) has non-finite components: \[0\.0, inf",
        ),
    ],
)
def test_invalid_orientation_is_named(quaternion: tuple, message: str) -> None:
    msg = Pose()
    msg.orientation.x, msg.orientation.y, msg.orientation.z, msg.orientation.w = quaternion
    with pytest.raises(ValueError, match=r"detections\[0\]\.results\[0\]\.pose\.pose\." + message):
        pose_to_matrix(msg, "detections[0].results[0].pose.pose")


def test_non_finite_position_is_named() -> None:
    msg = Pose()
    msg.position.x = float("inf")
    msg.orientation.w = 1.0
    with pytest.raises(
        ValueError, match=r"p\.position has non-finite components: \[inf, 0\.0, 0\.0\]"
    ):
        pose_to_matrix(msg, "p")


# -- detections ----------------------------------------------------------------------------------------------


def test_parse_detections_reports_each_problem_with_its_field() -> None:
    msg = detections_msg(
        1.0,
        [
            ("a", "demo_object", pose()),
            ("b", "teapot", pose()),
            ("c", "demo_object", ((0.0, 0.0, 0.5), (0.0, 0.0, 0.0, 0.0))),
        ],
    )
    msg.detections[2].results[0].hypothesis.class_id = "demo_object"
    from vision_msgs.msg import Detection3D

    msg.detections.append(Detection3D(id="d"))
    parsed = parse_detections(msg, {"demo_object"}, FRAME)
    assert [p.detection_id for p in parsed] == ["a", "b", "c", "d"]
    assert parsed[0].error is None and np.allclose(parsed[0].T_init, pose())
    assert (
        "detections[1].results[0].hypothesis.class_id 'teapot' is not in the object table"
        in parsed[1].error
    )
    assert (
        "detections[2].results[0].pose.pose.orientation (x, y, z, w) has zero norm"
        in parsed[2].error
    )
    assert parsed[3].error == "detections[3].results is empty: no class id and no pose"


def test_parse_detections_rejects_poses_in_another_frame() -> None:
    msg = detections_msg(1.0, [("", "demo_object", pose())], frame="camera_link")
    (parsed,) = parse_detections(msg, {"demo_object"}, FRAME)
    assert parsed.error.startswith(
        "detections.header.frame_id 'camera_link' differs from image.header"
    )
    msg.header.frame_id = ""  # unset: accepted, the image's frame is assumed
    msg.detections[0].header.frame_id = ""
    assert parse_detections(msg, {"demo_object"}, FRAME)[0].error is None


def test_instance_names_are_unique_per_frame() -> None:
    names, duplicates = instance_names(["mug", "mug", "mug_1", "box", "mug", "box"])
    assert names == ["mug", "mug_2", "mug_1", "box", "mug_3", "box_1"]
    assert duplicates == ["mug", "box"]


# -- writing messages (rclpy's classes and a rosbags typestore's) --------------------------------------------


def _typestore():
    from attn6d_ros.ros.bag_io import message_typestore

    return message_typestore([], list(codec.TYPE_NAMES.values()))


def _types(kind: str) -> codec.MessageTypes:
    return rclpy_types() if kind == "rclpy" else codec.MessageTypes.from_typestore(_typestore())


def _inputs(types: codec.MessageTypes, rgb: np.ndarray) -> dict[str, object]:
    header = codec.header_msg(types, 1_700_000_000_123_456_789, FRAME)
    items = [("a", "demo_object", pose(0.05), 0.7), ("", "demo_object", pose(z=0.9), 0.2)]
    return {
        "std_msgs/msg/Header": header,
        "sensor_msgs/msg/Image": codec.image_msg(types, rgb, header, "bgr8"),
        "sensor_msgs/msg/CompressedImage": codec.compressed_image_msg(types, rgb, header, "png"),
        "sensor_msgs/msg/CameraInfo": codec.camera_info_msg(types, K_VGA, 640, 480, header),
        "vision_msgs/msg/Detection3DArray": codec.detections_msg(types, header, items),
        "geometry_msgs/msg/PoseStamped": types.PoseStamped(
            header=header, pose=pose_msg(types, pose(yaw_deg=-40.0))
        ),
    }


@pytest.mark.parametrize("kind", ["rclpy", "rosbags"])
def test_written_inputs_read_back_as_written(kind: str, rgb: np.ndarray) -> None:
    types = _types(kind)
    header = codec.header_msg(types, 1_700_000_000_123_456_789, "cam")
    assert codec.stamp_ns(header) == 1_700_000_000_123_456_789
    assert codec.stamp_text(header) == "1700000000.123456789" and header.frame_id == "cam"
    for encoding in ("rgb8", "bgr8"):
        image = codec.image_msg(types, rgb, header, encoding)
        assert (image.encoding, image.step, codec.stamp_ns(image.header)) == (
            encoding, 21, 1_700_000_000_123_456_789,
        )  # fmt: skip
        assert np.array_equal(image_to_rgb(image), rgb)
    compressed = codec.compressed_image_msg(types, rgb, header, "png")
    assert compressed.format == "rgb8; png compressed bgr8"
    assert np.array_equal(codec.image_msg_to_rgb(compressed), rgb)  # PNG: lossless
    intrinsics = camera_intrinsics(codec.camera_info_msg(types, K_VGA, 640, 480, header), 640, 480)
    assert np.array_equal(intrinsics.K, K_VGA)
    assert not intrinsics.distorted and not intrinsics.size_unchecked
    T = pose(0.05, yaw_deg=30.0)
    items = [
        ("a", "demo_object", T, 0.7),
        ("", "demo_object", ((0.0, 0.0, 0.5), (0, 0, 0, 0)), 0.2),
    ]
    good, bad = parse_detections(
        codec.detections_msg(types, header, items), {"demo_object"}, "cam"
    )
    assert (good.detection_id, good.class_id, good.score, good.error) == (
        "a",
        "demo_object",
        0.7,
        None,
    )
    assert np.allclose(good.T_init, T, atol=1e-12)
    assert (
        bad.score == pytest.approx(0.2)
        and "detections[1].results[0].pose.pose.orientation" in bad.error
    )


def test_both_kinds_of_class_write_the_same_messages(rgb: np.ndarray) -> None:
    """rclpy's bytes, read by rosbags and written again, equal rosbags' own (rclpy leaves the alignment
    padding unset, so the bytes are compared after one pass through rosbags)."""
    from rclpy.serialization import serialize_message

    typestore = _typestore()
    ours = _inputs(rclpy_types(), rgb)
    theirs = _inputs(codec.MessageTypes.from_typestore(typestore), rgb)
    for name, msg in ours.items():
        again = typestore.deserialize_cdr(serialize_message(msg), name)
        assert bytes(typestore.serialize_cdr(again, name)) == bytes(
            typestore.serialize_cdr(theirs[name], name)
        ), name


def test_image_msg_refuses_what_it_cannot_write(rgb: np.ndarray) -> None:
    header = codec.header_msg(rclpy_types(), 0, FRAME)
    with pytest.raises(ValueError, match=r"encoding 'mono8' cannot be written"):
        codec.image_msg(rclpy_types(), rgb, header, "mono8")
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 image, got float32"):
        codec.image_msg(rclpy_types(), rgb.astype(np.float32), header)


def test_seconds_and_nanoseconds() -> None:
    assert codec.seconds_to_ns(1_700_000_000.25) == 1_700_000_000_250_000_000
    time_msg = codec.time_msg(rclpy_types(), 3_000_000_007)
    assert (time_msg.sec, time_msg.nanosec) == (3, 7)
