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


def bag_typestore():
    """A rosbags typestore with the inputs' and the outputs' types (codec.TYPE_NAMES)."""
    from attn6d_ros.ros.bag_io import message_typestore
    from attn6d_ros.ros.codec import TYPE_NAMES

    return message_typestore([], list(TYPE_NAMES.values()))


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

    from attn6d_ros.ros import codec as ros_codec
    from attn6d_ros.tools.demo import HEIGHT, K_DEMO, WIDTH

    typestore = bag_typestore()
    types = ros_codec.MessageTypes.from_typestore(typestore)
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
        header = ros_codec.header_msg(types, f.stamp_ns, FRAME)
        if codec:
            image = ros_codec.compressed_image_msg(types, f.rgb, header, codec)
        else:
            image = ros_codec.image_msg(types, f.rgb, header)
        msgs = [("image", image)]
        if i not in skip_info:
            msgs.append(("info", ros_codec.camera_info_msg(types, K_DEMO, WIDTH, HEIGHT, header)))
        if i not in skip_detections:
            items = [("", class_id, f.T_init, 1.0)] * detections_per_frame
            msgs.append(("det", ros_codec.detections_msg(types, header, items)))
        if extra_topics:
            pose = types.PoseStamped(header=header, pose=ros_codec.pose_msg(types, f.T_gt))
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
