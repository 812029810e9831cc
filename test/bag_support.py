"""Writes rosbag2 bags of demo frames with rosbags for the bag tool's tests (no ROS needed).

Frames come from the demo's synthetic world (demo.World: the demo object over a textured background,
640x480, K_DEMO), detections are its true poses with DeepIM noise (synth.SceneGenerator.perturb).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FRAME = "demo_camera_optical_frame"
IMAGE_TOPIC = "/cam/image_raw"
COMPRESSED_TOPIC = "/cam/image_raw/compressed"
INFO_TOPIC = "/cam/camera_info"
DETECTIONS_TOPIC = "/detector/detections"


@dataclass
class BagFrame:
    stamp_ns: int
    rgb: np.ndarray
    T_gt: np.ndarray
    T_init: np.ndarray


def demo_frames(count: int, seed: int = 3, phase_span: float = 0.3) -> list[BagFrame]:
    """`count` frames of the demo trajectory (phases 0..phase_span: before the occluder), 0.5 s apart."""
    from attn6d_ros.objects import load_objects
    from attn6d_ros.synth import SceneGenerator, SynthConfig
    from attn6d_ros.tools.demo import World

    model = load_objects(Path(__file__).resolve().parents[1] / "config" / "objects.yaml")[
        "demo_object"
    ]
    world = World(model, seed)
    generator = SceneGenerator([model], SynthConfig())
    rng = np.random.default_rng(seed + 1)
    frames = []
    try:
        for i in range(count):
            rgb, T_gt = world.frame(phase_span * i / max(count - 1, 1))
            stamp_ns = 1_700_000_000_000_000_000 + i * 500_000_000
            frames.append(BagFrame(stamp_ns, rgb, T_gt, generator.perturb(rng, T_gt)))
    finally:
        world.renderer.close()
        generator.renderer.close()
    return frames


def _header(types: dict, stamp_ns: int, frame: str = FRAME):
    Time, Header = types["builtin_interfaces/msg/Time"], types["std_msgs/msg/Header"]
    return Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=frame)


def _pose(types: dict, T: np.ndarray):
    from attn6d_ros.geometry import matrix_to_quat_xyzw

    x, y, z, w = (float(v) for v in matrix_to_quat_xyzw(T[:3, :3]))
    return types["geometry_msgs/msg/Pose"](
        position=types["geometry_msgs/msg/Point"](*(float(v) for v in T[:3, 3])),
        orientation=types["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w),
    )


def image_msg(types: dict, rgb: np.ndarray, stamp_ns: int, codec: str | None = None):
    """rgb8 Image, or CompressedImage ('jpeg' / 'png') as image_transport's compressed plugin."""
    from attn6d_ros.ros.compressed_image import rgb_to_compressed_data

    header = _header(types, stamp_ns)
    if codec:
        data = np.frombuffer(rgb_to_compressed_data(rgb, codec), dtype=np.uint8)
        fmt = f"rgb8; {codec} compressed bgr8"
        return types["sensor_msgs/msg/CompressedImage"](header=header, format=fmt, data=data)
    h, w = rgb.shape[:2]
    return types["sensor_msgs/msg/Image"](
        header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
        data=np.ascontiguousarray(rgb).reshape(-1),
    )  # fmt: skip


def info_msg(types: dict, K: np.ndarray, stamp_ns: int, width: int = 640, height: int = 480):
    roi = types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
    )
    return types["sensor_msgs/msg/CameraInfo"](
        header=_header(types, stamp_ns), height=height, width=width, distortion_model="plumb_bob",
        d=np.zeros(5), k=np.asarray(K, dtype=np.float64).reshape(9), r=np.eye(3).reshape(9),
        p=np.hstack([K, np.zeros((3, 1))]).reshape(12), binning_x=0, binning_y=0, roi=roi,
    )  # fmt: skip


def detections_msg(types: dict, stamp_ns: int, items: list):
    """items: (detection id, class id, T_init)."""
    header = _header(types, stamp_ns)
    detections = []
    for detection_id, class_id, T in items:
        hypothesis = types["vision_msgs/msg/ObjectHypothesisWithPose"](
            hypothesis=types["vision_msgs/msg/ObjectHypothesis"](class_id=class_id, score=1.0),
            pose=types["geometry_msgs/msg/PoseWithCovariance"](
                pose=_pose(types, T), covariance=np.zeros(36)
            ),
        )
        bbox = types["vision_msgs/msg/BoundingBox3D"](
            center=_pose(types, np.eye(4)),
            size=types["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
        )
        detections.append(
            types["vision_msgs/msg/Detection3D"](
                header=header, results=[hypothesis], bbox=bbox, id=detection_id
            )
        )
    return types["vision_msgs/msg/Detection3DArray"](header=header, detections=detections)


def bag_typestore():
    from attn6d_ros.ros.bag_io import message_typestore
    from attn6d_ros.ros.codec import TYPE_NAMES

    return message_typestore(
        [], ["sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/CameraInfo",
             *TYPE_NAMES.values()],
    )  # fmt: skip


def write_bag(
    path: Path,
    frames: list[BagFrame],
    *,
    storage: str = "sqlite3",
    codec: str | None = None,
    skip_info: tuple[int, ...] = (),
    skip_detections: tuple[int, ...] = (),
    corrupt_detections: int | None = None,
    detections_per_frame: int = 1,
    class_id: str = "demo_object",
    extra_topics: bool = False,
) -> Path:
    """A rosbag2 at `path`: per frame image (raw or compressed), camera_info, detections, in that order,
    1 ms apart in bag time, 30 ms after the frame's stamp. Frames in `skip_info` have no camera_info, those in
    `skip_detections` no detections; frame `corrupt_detections` has a cut-short detections message."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from attn6d_ros.tools.demo import K_DEMO

    typestore = bag_typestore()
    types = typestore.types
    writer = Writer(path, version=9, storage_plugin={"sqlite3": StoragePlugin.SQLITE3,
                                                     "mcap": StoragePlugin.MCAP}[storage])  # fmt: skip
    writer.open()
    image_type = "sensor_msgs/msg/CompressedImage" if codec else "sensor_msgs/msg/Image"
    conns = {
        "image": writer.add_connection(
            COMPRESSED_TOPIC if codec else IMAGE_TOPIC, image_type, typestore=typestore
        ),
        "info": writer.add_connection(
            INFO_TOPIC, "sensor_msgs/msg/CameraInfo", typestore=typestore
        ),
        "det": writer.add_connection(
            DETECTIONS_TOPIC, "vision_msgs/msg/Detection3DArray", typestore=typestore
        ),
    }
    if extra_topics:
        conns["gt"] = writer.add_connection(
            "/ground_truth", "geometry_msgs/msg/PoseStamped", typestore=typestore
        )
    for i, f in enumerate(frames):
        t = f.stamp_ns + 30_000_000  # received 30 ms after the stamp
        msgs = [("image", image_msg(types, f.rgb, f.stamp_ns, codec))]
        if i not in skip_info:
            msgs.append(("info", info_msg(types, K_DEMO, f.stamp_ns)))
        if i not in skip_detections:
            msgs.append(
                (
                    "det",
                    detections_msg(
                        types, f.stamp_ns, [("", class_id, f.T_init)] * detections_per_frame
                    ),
                )
            )
        if extra_topics:
            pose = types["geometry_msgs/msg/PoseStamped"](
                header=_header(types, f.stamp_ns), pose=_pose(types, f.T_gt)
            )
            msgs.append(("gt", pose))
        for k, (kind, msg) in enumerate(msgs):
            raw = typestore.serialize_cdr(msg, msg.__msgtype__)
            if kind == "det" and i == corrupt_detections:
                raw = raw[:12]  # cut short: the bag is corrupt from this message on
            writer.write(conns[kind], t + k * 1_000_000, raw)
    writer.close()
    return path


def read_bag(path: Path) -> dict[str, list]:
    """{topic: [(bag time ns, message)]} of every message, with the bag's own definitions."""
    from rosbags.rosbag2 import Reader

    from attn6d_ros.ros.bag_io import message_typestore

    out: dict[str, list] = {}
    with Reader(path) as reader:
        typestore = message_typestore(reader.connections, [c.msgtype for c in reader.connections])
        for connection, t, raw in reader.messages():
            out.setdefault(connection.topic, []).append(
                (t, typestore.deserialize_cdr(raw, connection.msgtype))
            )
    return out
