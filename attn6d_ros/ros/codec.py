"""Pure conversions between ROS messages and the numpy arrays of the core (no node, no publishing).

Images: `image_to_rgb` decodes sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8, and their 16-bit forms)
into (H, W, 3) uint8 RGB, honouring `step` (row padding) and `is_bigendian` (16-bit data). When cv_bridge is
importable it does the pixel conversion (`USING_CV_BRIDGE`); the numpy code here is the fallback for
installations without it (PyPI wheels). Either way the checks below run first, so both paths accept and reject
the same messages, with errors that name the field and its value.

Camera: `camera_intrinsics` turns sensor_msgs/CameraInfo into the K of the image actually received (binning
and region of interest applied), after checking it against the image size.

Poses follow geometry.py: 4x4 float64 ``T_cam_obj``, metres, quaternions x, y, z, w filled by field name.
Errors are ValueError messages naming the message field (``detections[2].results[0].pose.pose.orientation``)
and the offending value, so that a node can log them and report them in refined/details unchanged.

Outputs: `frame_messages` turns a frame's judged jobs (frame_jobs.py) into refined/details
(attn6d_ros/RefinementArray), refined/detections (vision_msgs/Detection3DArray, each with its bounding
box), one refined/pose (geometry_msgs/PoseStamped) per published object and the TF transforms, every one
carrying the image's header. The node publishes them with rclpy's classes (`MessageTypes.from_rclpy()`);
the bag tool writes them with the classes of a rosbags typestore (`MessageTypes.from_typestore`). Every
message is constructed with all of its fields as keywords, which both kinds of class accept, so the two
produce the same values.

Inputs, as a camera and a detector write them (the demo, the bench and the tests): `header_msg`, `image_msg`,
`compressed_image_msg`, `camera_info_msg`, `detections_msg`, with either kind of class.
"""

from __future__ import annotations

import array
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from attn6d_ros.geometry import check_intrinsics, matrix_to_quat_xyzw, quat_xyzw_to_matrix
from attn6d_ros.render import FAR
from attn6d_ros.ros.compressed_image import compressed_to_rgb, rgb_to_compressed_data

if TYPE_CHECKING:
    from attn6d_ros.ros.frame_jobs import Job


# cv_bridge is the ROS way; PyPI ROS wheels do not have it (environment.md §5). It is imported on first use,
# so that importing this module (and the ROS-free frame_jobs.py through it) imports no ROS package:
# `_BRIDGE` (a CvBridge, or None without cv_bridge) and `USING_CV_BRIDGE` appear then (`__getattr__`).
def _load_bridge() -> None:
    global _BRIDGE, USING_CV_BRIDGE
    try:
        from cv_bridge import CvBridge

        bridge = CvBridge()
    except ImportError:  # pragma: no cover - depends on the installation
        bridge = None
    _BRIDGE, USING_CV_BRIDGE = bridge, bridge is not None


def __getattr__(name: str) -> Any:
    if name in ("_BRIDGE", "USING_CV_BRIDGE"):
        _load_bridge()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _bridge() -> Any | None:
    """The CvBridge, or None without cv_bridge (or where a test set `_BRIDGE` to None)."""
    return globals()["_BRIDGE"] if "_BRIDGE" in globals() else __getattr__("_BRIDGE")


# encoding -> (channels, bytes per channel, channel order)
ENCODINGS: dict[str, tuple[int, int, str]] = {
    "rgb8": (3, 1, "rgb"),
    "bgr8": (3, 1, "bgr"),
    "rgba8": (4, 1, "rgb"),
    "bgra8": (4, 1, "bgr"),
    "mono8": (1, 1, "mono"),
    "rgb16": (3, 2, "rgb"),
    "bgr16": (3, 2, "bgr"),
    "rgba16": (4, 2, "rgb"),
    "bgra16": (4, 2, "bgr"),
    "mono16": (1, 2, "mono"),
}


# -- images -------------------------------------------------------------------------------------------------


def check_image_message(msg: Any) -> tuple[int, int, int, int]:
    """Checks an Image's encoding, size, step and data length; returns (width, height, channels, bytes).

    Raises:
        ValueError: naming the field (image.encoding, image.step, ...) and its value.
    """
    encoding = msg.encoding
    if encoding not in ENCODINGS:
        raise ValueError(
            f"image.encoding {encoding!r} is not supported; expected one of {sorted(ENCODINGS)}"
        )
    channels, depth, _ = ENCODINGS[encoding]
    width, height = int(msg.width), int(msg.height)
    if width < 2 or height < 2:
        raise ValueError(f"image.width x image.height is {width}x{height}; expected at least 2x2")
    row_bytes = width * channels * depth
    if msg.step < row_bytes:
        raise ValueError(
            f"image.step {msg.step} is smaller than width x channels x bytes = {row_bytes} "
            f"({width} px of {encoding})"
        )
    if len(msg.data) < msg.step * height:
        raise ValueError(
            f"image.data has {len(msg.data)} bytes; step x height = {msg.step} x {height} = "
            f"{msg.step * height} expected"
        )
    return width, height, channels, depth


def image_to_rgb(msg: Any) -> np.ndarray:
    """Decodes a sensor_msgs/Image into (H, W, 3) uint8 RGB.

    Alpha is dropped, mono is replicated to three channels, 16-bit values are scaled to 8 bits (v / 257,
    rounded, as cv_bridge does). The result never shares memory with the message.

    Raises:
        ValueError: unsupported encoding, or size, step and data length that do not fit (names the field).
    """
    width, height, channels, depth = check_image_message(msg)
    bridge = _bridge()
    if bridge is not None and _bridge_reads(msg, channels, depth):  # pragma: no cover
        return np.ascontiguousarray(bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
    return _decode_numpy(msg, width, height, channels, depth)


def image_msg_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image (`image_to_rgb`) or CompressedImage (compressed_image.py) -> (H, W, 3) uint8 RGB.

    Raises:
        ValueError: what either decoder refuses, naming the field and the value.
    """
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return compressed_to_rgb(msg)
    return image_to_rgb(msg)


def _bridge_reads(msg: Any, channels: int, depth: int) -> bool:
    """Whether cv_bridge's Python half decodes this layout correctly. It reads rows as whole pixels (a step
    padded by a part of a pixel shifts every row after the first) and swaps 16-bit bytes with
    ndarray.newbyteorder, which NumPy 2 removed; those layouts go to the numpy decoder
    (test_upstream_ros.py compares both on every encoding and layout)."""
    return msg.step % (channels * depth) == 0 and not (depth == 2 and msg.is_bigendian)


def _decode_numpy(msg: Any, width: int, height: int, channels: int, depth: int) -> np.ndarray:
    buffer = np.frombuffer(msg.data, dtype=np.uint8, count=msg.step * height)
    rows = buffer.reshape(height, msg.step)[:, : width * channels * depth]  # drops the row padding
    if depth == 2:
        dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
        values = np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels)
        pixels = ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)
    else:
        pixels = rows.reshape(height, width, channels)
    order = ENCODINGS[msg.encoding][2]
    if order == "mono":
        return np.repeat(pixels, 3, axis=2)
    rgb = pixels[:, :, :3]
    if order == "bgr":
        rgb = rgb[:, :, ::-1]
    return np.array(
        rgb, order="C", copy=True
    )  # never a view of msg.data (rclpy's array is writable)


def rgb_to_image(rgb_u8: np.ndarray, header: Any) -> Any:
    """Encodes (H, W, 3) uint8 RGB as an rgb8 sensor_msgs/Image (rclpy's class) carrying `header`: with
    cv_bridge where it is installed, else `image_msg` (the same fields and bytes: test_upstream_ros.py)."""
    rgb = _check_rgb(rgb_u8)
    bridge = _bridge()
    if bridge is not None:  # pragma: no cover - exercised only where cv_bridge is installed
        return bridge.cv2_to_imgmsg(rgb, encoding="rgb8", header=header)
    return image_msg(rclpy_types(), rgb, header)


def _check_rgb(rgb_u8: np.ndarray) -> np.ndarray:
    rgb = np.ascontiguousarray(rgb_u8)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {rgb.dtype} {rgb.shape}")
    return rgb


# -- camera -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CameraIntrinsics:
    """K of the received image and what the node should warn about once.

    Attributes:
        K: (3, 3) float64 pinhole matrix of the image as received (binning and ROI applied).
        distorted: camera_info.d has a non-zero coefficient (rectified images are expected).
        size_unchecked: camera_info.width and height are 0, so the image size could not be checked.
    """

    K: np.ndarray
    distorted: bool
    size_unchecked: bool


def camera_intrinsics(info: Any, image_width: int, image_height: int) -> CameraIntrinsics:
    """Checks a sensor_msgs/CameraInfo against an image of the given size and returns its intrinsics.

    CameraInfo describes the full sensor; an image with binning and a region of interest is smaller, and its K
    is ``fx / bx, (cx - roi.x_offset) / bx`` (likewise in y), as sensor_msgs/CameraInfo documents.

    Raises:
        ValueError: K all zeros, non-finite or not a pinhole matrix; an image size that differs from the one
            camera_info implies. Messages name the field (camera_info.k, camera_info.width) and the values.
    """
    k = np.asarray(info.k, dtype=np.float64)
    if k.shape != (9,):
        raise ValueError(f"camera_info.k must have 9 entries, got {k.size}")
    if not np.all(np.isfinite(k)):
        raise ValueError(f"camera_info.k has non-finite entries: {k.tolist()}")
    if not np.any(k):
        raise ValueError(
            "camera_info.k is all zeros (an uncalibrated camera?): "
            "expected [fx, 0, cx, 0, fy, cy, 0, 0, 1]"
        )
    K = check_intrinsics(k.reshape(3, 3), name="camera_info.k").copy()
    bx, by = max(int(info.binning_x), 1), max(int(info.binning_y), 1)
    roi = info.roi
    use_roi = roi.width > 0 and roi.height > 0
    if use_roi:
        K[0, 2] -= roi.x_offset
        K[1, 2] -= roi.y_offset
    K[0, :] /= bx
    K[1, :] /= by
    size_unchecked = info.width == 0 and info.height == 0
    if not size_unchecked:
        full_w, full_h = (roi.width, roi.height) if use_roi else (info.width, info.height)
        expected = (full_w // bx, full_h // by)
        if (image_width, image_height) != expected:
            detail = ""
            if use_roi or bx > 1 or by > 1:
                detail = f" (roi {roi.width}x{roi.height}, binning {bx}x{by})"
            raise ValueError(
                f"image is {image_width}x{image_height} but camera_info.width x height is "
                f"{info.width}x{info.height}{detail}, i.e. {expected[0]}x{expected[1]} expected"
            )
    distorted = bool(np.any(np.asarray(info.d, dtype=np.float64) != 0.0))
    return CameraIntrinsics(K=K, distorted=distorted, size_unchecked=size_unchecked)


# -- poses --------------------------------------------------------------------------------------------------


def pose_to_matrix(pose: Any, name: str = "pose") -> np.ndarray:
    """geometry_msgs/Pose -> 4x4 float64 T (the quaternion is normalised).

    Raises:
        ValueError: non-finite position, or a non-finite or zero-norm orientation; names ``name.position`` or
            ``name.orientation`` and the value.
    """
    p = pose.position
    t = np.array([p.x, p.y, p.z], dtype=np.float64)
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{name}.position has non-finite components: {t.tolist()}")
    q = pose.orientation
    q_xyzw = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
    T = np.eye(4)
    T[:3, :3] = quat_xyzw_to_matrix(q_xyzw, name=f"{name}.orientation (x, y, z, w)")
    T[:3, 3] = t
    return T


# -- frames ---------------------------------------------------------------------------------------------


@dataclass
class DecodedFrame:
    """A frame's image and camera_info, decoded (`decode_frame`).

    Attributes:
        error: why the frame cannot be used, naming the field and the value; None when it can.
        rgb: (H, W, 3) uint8 RGB; None with `error`.
        K: (3, 3) float64 intrinsics of that image, pixels; None with `error`.
        warnings: (key, message, once) for what is usable but suspicious: once=True to log a single time,
            otherwise throttled per key.
    """

    error: str | None
    rgb: np.ndarray | None
    K: np.ndarray | None
    warnings: list[tuple[str, str, bool]]


def decode_frame(image: Any, info: Any) -> DecodedFrame:
    """Decodes sensor_msgs/Image (or CompressedImage) and CameraInfo, checked against each other."""
    try:
        rgb = image_msg_to_rgb(image)
        intrinsics = camera_intrinsics(info, rgb.shape[1], rgb.shape[0])
    except ValueError as exc:
        message = f"frame {stamp_text(image.header)} rejected: {exc}"
        return DecodedFrame(str(exc), None, None, [(f"frame:{str(exc)[:40]}", message, False)])
    warnings = []
    if intrinsics.distorted:
        warnings.append((
            "distortion",
            f"camera_info.d is non-zero ({list(info.d)}): images are expected rectified; poses from a "
            "distorted image are biased towards its borders (use image_proc's rectify node)",
            True,
        ))  # fmt: skip
    if intrinsics.size_unchecked:
        warnings.append(
            ("size", "camera_info.width and height are 0: the image size cannot be checked", True)
        )
    if image.header.frame_id != info.header.frame_id:
        warnings.append((
            "frame_ids",
            f"image.header.frame_id {image.header.frame_id!r} differs from camera_info.header.frame_id "
            f"{info.header.frame_id!r}; outputs use the image's",
            False,
        ))  # fmt: skip
    return DecodedFrame(None, rgb, intrinsics.K, warnings)


def stamp_ns(header: Any) -> int:
    """A std_msgs/Header's stamp in nanoseconds (rclpy's or rosbags' classes)."""
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def seconds_to_ns(t_s: float) -> int:
    """A time in seconds -> nanoseconds: the whole seconds exactly, the fraction rounded to 1 ns."""
    sec = int(t_s)
    return sec * 1_000_000_000 + round((t_s - sec) * 1e9)


def stamp_seconds(header: Any) -> float:
    """A std_msgs/Header's stamp in seconds."""
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def stamp_text(header: Any) -> str:
    """A std_msgs/Header's stamp as 'sec.nanosec' for log lines."""
    return f"{header.stamp.sec}.{header.stamp.nanosec:09d}"


# -- detections ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoarseDetection:
    """One Detection3D as the refiner needs it.

    Attributes:
        index: position in Detection3DArray.detections.
        detection_id: Detection3D.id ('' when the detector set none).
        class_id: results[0].hypothesis.class_id ('' when there is no result).
        pose: results[0].pose.pose as received (for reporting the initial pose even when it is invalid).
        T_init: (4, 4) coarse pose, or None when `error` is set.
        error: why this detection cannot be refined, naming the field and the value; None when fine.
        score: results[0].hypothesis.score (the detector's confidence); -inf without results or when not a
            finite number, so that such detections rank last (`limit_detections`).
    """

    index: int
    detection_id: str
    class_id: str
    pose: Any
    T_init: np.ndarray | None
    error: str | None = None
    score: float = float("-inf")


def parse_detections(
    msg: Any, known_classes: set[str] | list[str], image_frame: str
) -> list[CoarseDetection]:
    """Parses a vision_msgs/Detection3DArray; every detection comes back, bad ones with `error` set.

    The class id comes from results[0].hypothesis.class_id and the coarse pose from results[0].pose.pose; the
    pose must be in the image's optical frame, so a header frame_id that is set and differs from
    `image_frame` is an error (an empty frame_id is accepted: many detectors leave it unset), and so is a
    pose farther than the renderer's far plane (render.FAR, 20 m): it cannot be rendered, so not refined.
    """
    known = set(known_classes)
    array_frame = msg.header.frame_id
    frame_error = None
    if array_frame and image_frame and array_frame != image_frame:
        frame_error = (
            f"detections.header.frame_id {array_frame!r} differs from image.header.frame_id "
            f"{image_frame!r}: coarse poses must be in the image's optical frame"
        )
    parsed = []
    for i, detection in enumerate(msg.detections):
        where = f"detections[{i}]"
        if not detection.results:
            error = f"{where}.results is empty: no class id and no pose"
            parsed.append(CoarseDetection(i, detection.id, "", None, None, error))
            continue
        result = detection.results[0]
        class_id = result.hypothesis.class_id
        score = float(result.hypothesis.score)
        score = score if np.isfinite(score) else float("-inf")
        pose = result.pose.pose
        error = frame_error
        own_frame = detection.header.frame_id
        if error is None and own_frame and image_frame and own_frame != image_frame:
            error = (
                f"{where}.header.frame_id {own_frame!r} differs from image.header.frame_id "
                f"{image_frame!r}: coarse poses must be in the image's optical frame"
            )
        if error is None and not class_id:
            error = f"{where}.results[0].hypothesis.class_id is empty"
        elif error is None and class_id not in known:
            error = (
                f"{where}.results[0].hypothesis.class_id {class_id!r} is not in the object table; "
                f"known: {sorted(known)}"
            )
        T_init = None
        if error is None:
            try:
                T_init = pose_to_matrix(pose, name=f"{where}.results[0].pose.pose")
            except ValueError as exc:
                error = str(exc)
        if T_init is not None and T_init[2, 3] > FAR:
            error = (
                f"{where}.results[0].pose.pose.position.z is {T_init[2, 3]:.3g} m, beyond the "
                f"{FAR:g} m the renderer draws: a pose in millimetres, or in another frame?"
            )
            T_init = None
        parsed.append(CoarseDetection(i, detection.id, class_id, pose, T_init, error, score))
    return parsed


def limit_detections(
    detections: list[CoarseDetection], max_count: int
) -> tuple[list[CoarseDetection], int]:
    """The `max_count` highest-scored detections (ties: the earlier first), in their input order.

    Returns:
        (kept, how many were dropped).
    """
    if len(detections) <= max_count:
        return detections, 0
    ranked = sorted(range(len(detections)), key=lambda i: (-detections[i].score, i))
    keep = sorted(ranked[:max_count])
    return [detections[i] for i in keep], len(detections) - max_count


def instance_names(bases: list[str]) -> tuple[list[str], list[str]]:
    """Unique per-frame names: each base (detection id, else class id) as is, further uses get _1, _2...

    A suffixed name never collides with another detection's base name (``mug``, ``mug_1`` given as an id, and
    another ``mug`` give ``mug``, ``mug_1``, ``mug_2``).

    Returns:
        (names, duplicates): the names in input order, and the bases that occurred more than once.
    """
    taken = set(bases)
    used: set[str] = set()
    names = []
    duplicates = []
    for base in bases:
        if base not in used:
            name = base
        else:
            if base not in duplicates:
                duplicates.append(base)
            k = 1
            while f"{base}_{k}" in used or f"{base}_{k}" in taken:
                k += 1
            name = f"{base}_{k}"
        used.add(name)
        names.append(name)
    return names, duplicates


# -- message classes ----------------------------------------------------------------------------------------

# Attribute of MessageTypes -> ROS type name.
TYPE_NAMES: dict[str, str] = {
    "Time": "builtin_interfaces/msg/Time",
    "Header": "std_msgs/msg/Header",
    "Image": "sensor_msgs/msg/Image",
    "CompressedImage": "sensor_msgs/msg/CompressedImage",
    "CameraInfo": "sensor_msgs/msg/CameraInfo",
    "RegionOfInterest": "sensor_msgs/msg/RegionOfInterest",
    "Point": "geometry_msgs/msg/Point",
    "Quaternion": "geometry_msgs/msg/Quaternion",
    "Vector3": "geometry_msgs/msg/Vector3",
    "Pose": "geometry_msgs/msg/Pose",
    "PoseStamped": "geometry_msgs/msg/PoseStamped",
    "PoseWithCovariance": "geometry_msgs/msg/PoseWithCovariance",
    "Transform": "geometry_msgs/msg/Transform",
    "TransformStamped": "geometry_msgs/msg/TransformStamped",
    "TFMessage": "tf2_msgs/msg/TFMessage",
    "ObjectHypothesis": "vision_msgs/msg/ObjectHypothesis",
    "ObjectHypothesisWithPose": "vision_msgs/msg/ObjectHypothesisWithPose",
    "BoundingBox3D": "vision_msgs/msg/BoundingBox3D",
    "Detection3D": "vision_msgs/msg/Detection3D",
    "Detection3DArray": "vision_msgs/msg/Detection3DArray",
    "Refinement": "attn6d_ros/msg/Refinement",
    "RefinementArray": "attn6d_ros/msg/RefinementArray",
}


class MessageTypes:
    """The message classes messages are built from, as attributes named like `TYPE_NAMES`' keys.

    Attributes:
        numpy_sequences: unbounded array fields (uint8[] data, float64[] d) take numpy arrays (rosbags'
            classes); otherwise array.array (rclpy's classes refuse numpy there). Fixed-size arrays
            (float64[9] k) take numpy arrays in both.
    """

    def __init__(self, classes: dict[str, type], *, numpy_sequences: bool) -> None:
        missing = sorted(set(TYPE_NAMES) - set(classes))
        if missing:
            raise ValueError(f"MessageTypes needs classes for {[TYPE_NAMES[m] for m in missing]}")
        for name, cls in classes.items():
            setattr(self, name, cls)
        self.numpy_sequences = numpy_sequences

    @classmethod
    def from_rclpy(cls) -> MessageTypes:
        """rclpy's generated classes (imports the ROS packages)."""
        import importlib

        classes = {}
        for name, full in TYPE_NAMES.items():
            package, _, type_name = full.split("/")
            classes[name] = getattr(importlib.import_module(f"{package}.msg"), type_name)
        return cls(classes, numpy_sequences=False)

    @classmethod
    def from_typestore(cls, typestore: Any) -> MessageTypes:
        """The classes of a rosbags typestore in which all of `TYPE_NAMES` are registered."""
        missing = sorted(full for full in TYPE_NAMES.values() if full not in typestore.types)
        if missing:
            raise ValueError(f"the typestore has no definition of {missing}")
        classes = {name: typestore.types[full] for name, full in TYPE_NAMES.items()}
        return cls(classes, numpy_sequences=True)


@functools.cache
def rclpy_types() -> MessageTypes:
    """`MessageTypes.from_rclpy()`, made once per process."""
    return MessageTypes.from_rclpy()


def _sequence(types: MessageTypes, values: np.ndarray) -> Any:
    """An unbounded array field from a 1-D uint8 or float64 array (`MessageTypes.numpy_sequences`). rclpy
    takes an array.array as it is; bytes or a list it would check element by element."""
    values = np.ascontiguousarray(values)
    if types.numpy_sequences:
        return values
    return array.array(values.dtype.char, values.tobytes())


# -- writing messages ---------------------------------------------------------------------------------------
# Every message is constructed with all of its fields as keywords: rosbags' classes need them all, rclpy's
# accept them, so both kinds of class get the same values.


def time_msg(types: MessageTypes, stamp_ns: int) -> Any:
    """builtin_interfaces/Time of a time in nanoseconds."""
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return types.Time(sec=sec, nanosec=nanosec)


def header_msg(types: MessageTypes, stamp_ns: int, frame_id: str) -> Any:
    """std_msgs/Header stamped `stamp_ns` nanoseconds, in frame `frame_id`."""
    return types.Header(stamp=time_msg(types, stamp_ns), frame_id=frame_id)


def image_msg(types: MessageTypes, rgb_u8: np.ndarray, header: Any, encoding: str = "rgb8") -> Any:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image, rgb8 or bgr8 (channels swapped), rows unpadded.

    Raises:
        ValueError: not an (H, W, 3) uint8 image, or another encoding (named with its value).
    """
    rgb = _check_rgb(rgb_u8)
    if encoding not in ("rgb8", "bgr8"):
        raise ValueError(f"encoding {encoding!r} cannot be written; expected 'rgb8' or 'bgr8'")
    pixels = rgb[:, :, ::-1] if encoding == "bgr8" else rgb
    height, width = rgb.shape[:2]
    return types.Image(
        header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
        step=width * 3, data=_sequence(types, pixels.reshape(-1)),
    )  # fmt: skip


def compressed_image_msg(
    types: MessageTypes, rgb_u8: np.ndarray, header: Any, codec: str = "jpeg"
) -> Any:
    """(H, W, 3) uint8 RGB -> sensor_msgs/CompressedImage as image_transport's compressed plugin writes it
    (format ``rgb8; jpeg compressed bgr8``; codec 'jpeg' or 'png')."""
    data = np.frombuffer(rgb_to_compressed_data(_check_rgb(rgb_u8), codec), dtype=np.uint8)
    return types.CompressedImage(
        header=header, format=f"rgb8; {codec} compressed bgr8", data=_sequence(types, data)
    )


def camera_info_msg(
    types: MessageTypes, K: np.ndarray, width: int, height: int, header: Any
) -> Any:
    """sensor_msgs/CameraInfo of a rectified pinhole camera: k = K (3x3, pixels), r identity,
    p = [K | 0], d five zeros (plumb_bob), no binning, no region of interest. K is written as given, even
    one the node refuses (tests send those)."""
    k = np.asarray(K, dtype=np.float64).reshape(3, 3)
    roi = types.RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return types.CameraInfo(
        header=header, height=int(height), width=int(width), distortion_model="plumb_bob",
        d=_sequence(types, np.zeros(5)), k=k.reshape(9).copy(), r=np.eye(3).reshape(9),
        p=np.hstack([k, np.zeros((3, 1))]).reshape(12), binning_x=0, binning_y=0, roi=roi,
    )  # fmt: skip


def detections_msg(types: MessageTypes, header: Any, items: list[tuple]) -> Any:
    """vision_msgs/Detection3DArray, every detection carrying `header`, as a detector writes it.

    Args:
        items: (detection id, class id, pose, score) per detection; pose a 4x4 T_cam_obj (metres) or
            (position xyz, quaternion xyzw) written as given (tests send invalid ones).
    """
    detections = []
    for detection_id, class_id, pose, score in items:
        if isinstance(pose, tuple):
            coarse = _pose(types, pose[0], pose[1])
        else:
            coarse = pose_msg(types, pose)
        box = types.BoundingBox3D(
            center=pose_msg(types, np.eye(4)), size=types.Vector3(x=0.0, y=0.0, z=0.0)
        )
        detections.append(
            _detection_msg(types, header, detection_id, class_id, score, coarse, box)
        )
    return types.Detection3DArray(header=header, detections=detections)


def _detection_msg(
    types: MessageTypes, header: Any, detection_id: str, class_id: str, score: float, pose: Any,
    box: Any,
) -> Any:  # fmt: skip
    hypothesis = types.ObjectHypothesisWithPose(
        hypothesis=types.ObjectHypothesis(class_id=class_id, score=float(score)),
        pose=types.PoseWithCovariance(pose=pose, covariance=np.zeros(36, dtype=np.float64)),
    )
    return types.Detection3D(header=header, results=[hypothesis], bbox=box, id=detection_id)


def pose_msg(types: MessageTypes, T: np.ndarray) -> Any:
    """4x4 T -> geometry_msgs/Pose (unit quaternion with w >= 0)."""
    return _pose(types, T[:3, 3], matrix_to_quat_xyzw(T[:3, :3]))


def transform_msg(types: MessageTypes, T: np.ndarray) -> Any:
    """4x4 T -> geometry_msgs/Transform."""
    return types.Transform(
        translation=_xyz(types.Vector3, T[:3, 3]),
        rotation=_quaternion(types, matrix_to_quat_xyzw(T[:3, :3])),
    )


def _pose(types: MessageTypes, xyz: Any, q_xyzw: Any) -> Any:
    return types.Pose(position=_xyz(types.Point, xyz), orientation=_quaternion(types, q_xyzw))


def _xyz(cls: type, xyz: Any) -> Any:
    x, y, z = (float(v) for v in xyz)
    return cls(x=x, y=y, z=z)


def _quaternion(types: MessageTypes, q_xyzw: Any) -> Any:
    x, y, z, w = (float(v) for v in q_xyzw)
    return types.Quaternion(x=x, y=y, z=z, w=w)  # by field name: the order is x, y, z, w


# -- outputs ------------------------------------------------------------------------------------------------


@dataclass
class FrameMessages:
    """A frame's outputs (`frame_messages`).

    Attributes:
        details: RefinementArray with every job (latency_ms 0: the caller sets it).
        detections: Detection3DArray with the published objects only.
        poses: one PoseStamped per published object.
        transforms: one TransformStamped per published object (child = tf_prefix + instance id).
    """

    details: Any
    detections: Any
    poses: list[Any]
    transforms: list[Any]


def object_box(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """(centre, extent) of a mesh's axis-aligned box in its own frame, metres: refined/detections' bbox."""
    bounds = model.bounds
    return (bounds[0] + bounds[1]) / 2.0, bounds[1] - bounds[0]


def frame_messages(
    types: MessageTypes,
    header: Any,
    jobs: list[Job],
    *,
    tf_prefix: str,
    boxes: dict[str, tuple[np.ndarray, np.ndarray]],
    compute_ms: float,
) -> FrameMessages:
    """Builds a frame's outputs, each stamped with `header` (the image's).

    Args:
        types: the message classes to build with.
        header: the image's std_msgs/Header (of the same kind of class as `types`).
        jobs: the frame's jobs after frame_jobs.run_frame (each with its result and verdict).
        tf_prefix: prefix of the TF child frames (parameter tf_prefix).
        boxes: class id -> object_box(model), for the bounding boxes of refined/detections.
        compute_ms: milliseconds the Refiner spent on the frame.
    """
    details = types.RefinementArray(
        header=header, refinements=[], latency_ms=0.0, compute_ms=float(compute_ms)
    )
    array = types.Detection3DArray(header=header, detections=[])
    poses, transforms = [], []
    for job in jobs:
        details.refinements.append(_refinement(types, job))
        if not job.published:
            continue
        T = job.result.T
        array.detections.append(_detection(types, header, job, boxes))
        poses.append(types.PoseStamped(header=header, pose=pose_msg(types, T)))
        transforms.append(
            types.TransformStamped(
                header=header,
                child_frame_id=tf_prefix + job.instance_id,
                transform=transform_msg(types, T),
            )
        )
    return FrameMessages(details, array, poses, transforms)


def _refinement(types: MessageTypes, job: Job) -> Any:
    result, error = job.result, job.reported_error
    if job.initial_pose is not None:
        initial = job.initial_pose
    else:  # a track's pose, or a detection without results (identity)
        initial = pose_msg(types, job.T_init if job.T_init is not None else np.eye(4))
    if result is None:
        return types.Refinement(
            object_id=job.class_id, instance_id=job.instance_id, initial_pose=initial,
            refined_pose=initial, stage_poses=[], depth_factor=0.0, fit_motion_m=0.0, score=0.0,
            converged=False, tracked=job.tracked, method="", error=error or "",
        )  # fmt: skip
    return types.Refinement(
        object_id=job.class_id,
        instance_id=job.instance_id,
        initial_pose=initial,
        refined_pose=pose_msg(types, result.T),
        stage_poses=[pose_msg(types, T) for T in result.stage_poses],
        depth_factor=0.0,  # not run: the depth search and region fit were removed (issue 27)
        fit_motion_m=-1.0,
        score=float(result.score),
        converged=bool(result.converged),
        tracked=job.tracked,
        method=result.method,
        error=error or "",
    )


def _detection(types: MessageTypes, header: Any, job: Job, boxes: dict) -> Any:
    result = job.result
    center_obj, extent = boxes[job.class_id]
    T_box = result.T.copy()
    T_box[:3, 3] = result.T[:3, :3] @ center_obj + result.T[:3, 3]  # box centre, mesh axes
    box = types.BoundingBox3D(center=pose_msg(types, T_box), size=_xyz(types.Vector3, extent))
    return _detection_msg(
        types, header, job.detection_id, job.class_id, result.score, pose_msg(types, result.T), box
    )
