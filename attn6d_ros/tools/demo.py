"""`attn6d-demo` (`make demo`): a real ROS 2 graph on loopback that refines noisy poses of the demo object.

The graph:

- ``synthetic_camera`` (this process) renders 640x480 frames of the demo object moving along a smooth
  trajectory over a textured background, lit, with an occluder passing in front of it half-way through; it
  publishes ``/demo/camera/image_rect`` (rgb8), ``/demo/camera/camera_info`` and the true pose on
  ``/demo/camera/ground_truth`` (geometry_msgs/PoseStamped), all with one header per frame;
- ``coarse_detector`` (this process) turns each true pose, handed over by the camera as it publishes the frame
  (a detector that answers at once), into a noisy one (DeepIM noise: 15° per axis,
  1/1/5 cm; SceneGenerator.perturb) and publishes it as vision_msgs/Detection3DArray on
  ``/demo/detector/detections`` with the image's header; with ``--detect-every N`` only every N-th frame (a
  detector slower than the camera), and the node tracks the frames in between (tracking.wait_s);
- ``attn6d_refiner``, the refinement node, runs as its own process (``python -m attn6d_ros.node``) in
  namespace /demo with its three inputs remapped to those topics, as a user would launch it;
- ``demo_recorder`` (this process) pairs refined/details with the ground truth and saves the overlays.

At the end it prints one JSON line: frames published (and the camera's achieved rate: rendering a frame takes
time too) and processed, ADD 0.1d accuracy of the coarse and of the refined poses over the processed frames,
how many of them were refined from tracks (by the alignment alone with the default tracking.method) and the
refined accuracy over those, the methods that refined them, median latency, dropped frames (node
back-pressure counter), and writes every overlay as PNG plus an animated GIF to the output folder
(demo_out/). The node's log goes to <out>/node.log. Discovery stays on loopback
(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST unless set otherwise).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from attn6d_ros.paths import resolve_path
from attn6d_ros.ros.node_command import node_command
from attn6d_ros.ros.params import DEFAULT_CHECKPOINT, DEFAULT_OBJECTS_FILE

# Fast DDS 3 (Kilted) reads the first, Fast DDS 2 (Humble, Jazzy) the second.
DDS_PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")

WIDTH, HEIGHT = 640, 480
K_DEMO = np.array([[550.0, 0.0, 319.5], [0.0, 550.0, 239.5], [0.0, 0.0, 1.0]])
FRAME_ID = "demo_camera_optical_frame"
DEMO_DOMAIN_ID = 42  # ROS_DOMAIN_ID when none is set
NAMESPACE = "/demo"
# The drill seen from its side (-y face towards the camera), chuck to the right, grip down: object x -> camera
# x, object y -> camera z (away), object z -> camera -y (up in the image).
R_BASE = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


# -- the synthetic world -------------------------------------------------------------------------------------


def _rotation(axis: str, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def object_pose(phase: float) -> np.ndarray:
    """T_cam_obj at trajectory phase in [0, 1]: a slow sway in x and y, a turn about the vertical, a tilt."""
    T = np.eye(4)
    yaw = math.radians(55.0) * math.sin(2 * math.pi * phase)
    tilt = math.radians(15.0) * math.sin(4 * math.pi * phase)
    T[:3, :3] = _rotation("y", yaw) @ _rotation("x", tilt) @ R_BASE
    T[:3, 3] = [
        0.10 * math.sin(2 * math.pi * phase),
        0.04 * math.sin(4 * math.pi * phase + 0.5),
        0.62 + 0.08 * math.cos(2 * math.pi * phase),
    ]
    return T


def occluder_pose(phase: float) -> np.ndarray | None:
    """The occluder crosses the view left to right, 25 cm in front of the object, in the middle third."""
    if not 0.33 <= phase <= 0.67:
        return None
    s = (phase - 0.33) / 0.34
    T = np.eye(4)
    T[:3, :3] = _rotation("z", math.radians(20.0)) @ _rotation("x", 0.3)
    T[:3, 3] = [-0.32 + 0.64 * s, 0.03, 0.40]
    return T


def make_occluder():
    """A striped grey-green bar, 4 x 4 x 24 cm (an ObjectModel)."""
    import trimesh

    from attn6d_ros.mesh import model_from_arrays

    box = trimesh.creation.box(extents=(0.04, 0.24, 0.04))
    vertices, faces = trimesh.remesh.subdivide_to_size(box.vertices, box.faces, max_edge=0.01)
    stripes = (np.sin(vertices[:, 1] * 2 * np.pi / 0.03) > 0)[:, None]
    colors = np.where(stripes, [0.35, 0.55, 0.35], [0.75, 0.78, 0.7])
    return model_from_arrays(vertices, faces, colors, name="occluder")


def make_background(seed: int) -> np.ndarray:
    """(H, W, 3) uint8: a colour gradient, a tiled floor pattern and a few random shapes (fixed by seed)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    base = np.stack([90 + 60 * xx / WIDTH, 100 + 40 * yy / HEIGHT, 120 - 30 * xx / WIDTH], axis=2)
    tiles = ((xx // 40 + yy // 40) % 2)[:, :, None]
    image = base * (0.8 + 0.25 * tiles)
    canvas = PILImage.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(14):
        x0, y0 = rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT)
        w, h = rng.uniform(20, 120), rng.uniform(20, 120)
        color = tuple(int(c) for c in rng.integers(30, 230, size=3))
        shape = draw.ellipse if rng.uniform() < 0.5 else draw.rectangle
        shape([x0, y0, x0 + w, y0 + h], fill=color)
    return np.asarray(canvas)


class World:
    """Renders the frames of the demo (call on one thread: it owns an OpenGL context)."""

    def __init__(self, model, seed: int) -> None:
        from attn6d_ros.render import Light, Renderer

        self.model = model
        self.occluder = make_occluder()
        self.background = make_background(seed).astype(np.float32)
        self.renderer = Renderer()
        self.light = Light(direction_cam=(0.3, -0.6, -1.0), ambient=0.45, diffuse=0.7)
        self.rng = np.random.default_rng(seed)

    def frame(self, phase: float) -> tuple[np.ndarray, np.ndarray]:
        """(image (H, W, 3) uint8, T_gt)."""
        T_gt = object_pose(phase)
        scene = [(self.model, T_gt)]
        T_occ = occluder_pose(phase)
        if T_occ is not None:
            scene.append((self.occluder, T_occ))
        out = self.renderer.render_scene(scene, K_DEMO, WIDTH, HEIGHT, light=self.light)
        image = np.where(out.mask[:, :, None], out.rgb.astype(np.float32), self.background)
        image += self.rng.normal(0.0, 3.0, size=image.shape).astype(np.float32)  # sensor noise
        return np.clip(np.rint(image), 0, 255).astype(np.uint8), T_gt


# -- the ROS graph ------------------------------------------------------------------------------------


@dataclass
class FrameRecord:
    index: int
    T_gt: np.ndarray
    details: object | None = None
    overlay: np.ndarray | None = None


@dataclass
class Recording:
    frames: dict[int, FrameRecord] = field(default_factory=dict)  # by image stamp (ns)
    dropped_frames: int | None = None
    device: str = ""
    publish_times: list[float] = field(default_factory=list)  # time.monotonic() of each frame sent


def _make_nodes(args, model, recording: Recording):
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseStamped
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image
    from vision_msgs.msg import Detection3DArray

    from attn6d_ros.msg import RefinementArray
    from attn6d_ros.ros import codec
    from attn6d_ros.synth import SceneGenerator, SynthConfig

    types = codec.rclpy_types()

    def record_of(header) -> FrameRecord | None:
        """The frame stamped as `header` (None for a stamp this demo did not publish)."""
        return recording.frames.get(codec.stamp_ns(header))

    class SyntheticCamera(Node):
        def __init__(self) -> None:
            super().__init__("synthetic_camera", namespace=f"{NAMESPACE}/camera")
            # As camera drivers do: best effort, the node's default image QoS (the Fast DDS profile set
            # in main() lets 640x480 frames through; issue 30).
            self.pub_image = self.create_publisher(Image, "image_rect", qos_profile_sensor_data)
            self.pub_info = self.create_publisher(
                CameraInfo, "camera_info", qos_profile_sensor_data
            )
            self.pub_truth = self.create_publisher(PoseStamped, "ground_truth", 10)
            self.world = World(model, args.seed)
            self.published = 0

        def publish_next(self) -> None:
            phase = self.published / max(args.frames - 1, 1)
            image, T_gt = self.world.frame(phase)
            stamp_ns = self.get_clock().now().nanoseconds
            header = codec.header_msg(types, stamp_ns, FRAME_ID)
            recording.frames[stamp_ns] = FrameRecord(self.published, T_gt)
            info = codec.camera_info_msg(types, K_DEMO, WIDTH, HEIGHT, header)
            recording.publish_times.append(time.monotonic())
            self.pub_image.publish(codec.rgb_to_image(image, header))
            self.pub_info.publish(info)
            self.pub_truth.publish(PoseStamped(header=header, pose=codec.pose_msg(types, T_gt)))
            self.published += 1
            # The detector answers at once: called here rather than from its ground-truth subscription,
            # which waits in this process's executor queue behind the frames (0.5 s at 30 Hz on a busy
            # CPU: later than tracking.wait_s, so its answers were ignored).
            detector.detect(header, T_gt)

    class CoarseDetector(Node):
        def __init__(self) -> None:
            super().__init__("coarse_detector", namespace=f"{NAMESPACE}/detector")
            self.pub = self.create_publisher(Detection3DArray, "detections", 10)
            self.generator = SceneGenerator([model], SynthConfig())
            self.rng = np.random.default_rng(args.seed + 1)

        def detect(self, header, T_gt: np.ndarray) -> None:
            """The camera's frame `header` with the object at `T_gt`: a noisy detection, or none."""
            record = record_of(header)
            if record is None or record.index % args.detect_every:
                return  # a slower detector skips this frame
            T_noisy = self.generator.perturb(self.rng, T_gt)
            item = ("", args.object_id, T_noisy, 1.0)
            self.pub.publish(codec.detections_msg(types, header, [item]))

    class Recorder(Node):
        def __init__(self) -> None:
            super().__init__("demo_recorder", namespace=NAMESPACE)
            self.create_subscription(RefinementArray, "refined/details", self.on_details, 50)
            self.create_subscription(Image, "debug/attention_overlay", self.on_overlay, 50)
            self.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, 10)

        def on_details(self, msg: RefinementArray) -> None:
            record = record_of(msg.header)
            if record is not None:
                record.details = msg

        def on_overlay(self, msg: Image) -> None:
            record = record_of(msg.header)
            if record is not None:
                record.overlay = codec.image_to_rgb(msg)

        def on_diagnostics(self, msg: DiagnosticArray) -> None:
            for status in msg.status:
                if "attn6d_refiner" in status.name:
                    values = {kv.key: kv.value for kv in status.values}
                    recording.dropped_frames = int(values.get("dropped frames", "0"))
                    recording.device = values.get("device", "")

    detector = CoarseDetector()
    return SyntheticCamera(), detector, Recorder()


def _node_command(args, log_level: str = "info") -> list[str]:
    params = {
        "checkpoint": args.checkpoint,
        "objects_file": args.objects,
        "device": args.device,
        "cpu_threads": args.cpu_threads,
        "stages": args.stages,
        "overlay.max_rate_hz": 0.0,  # an overlay for every processed frame (the demo subscribes)
    }
    if args.detect_every > 1:
        # Frames the detector skips are refined from the last poses (the demo's detector answers at once).
        params |= {"tracking.enabled": True, "tracking.wait_s": 0.2}
    remaps = {
        "image": f"{NAMESPACE}/camera/image_rect",
        "camera_info": f"{NAMESPACE}/camera/camera_info",
        "detections": f"{NAMESPACE}/detector/detections",
    }
    return node_command(params, assignments=args.param, namespace=NAMESPACE, remaps=remaps,
                        log_level=log_level)  # fmt: skip


# -- results ------------------------------------------------------------------------------------------------


def summarize(recording: Recording, model, published: int) -> dict:
    """The JSON summary: accuracies over the processed frames (ADD < 0.1 diameter)."""
    from attn6d_ros.metrics import add_or_add_s, add_success
    from attn6d_ros.ros.codec import pose_to_matrix

    init_ok, refined_ok, latencies, published_refined, tracked = [], [], [], 0, 0
    tracked_ok, methods = [], Counter()
    for record in recording.frames.values():
        details = record.details
        if details is None or not details.refinements:
            continue
        refinement = details.refinements[0]
        latencies.append(details.latency_ms)
        T_init = pose_to_matrix(refinement.initial_pose, "initial_pose")
        T_refined = pose_to_matrix(refinement.refined_pose, "refined_pose")
        for T, bucket in ((T_init, init_ok), (T_refined, refined_ok)):
            error = add_or_add_s(T, record.T_gt, model.points, model.symmetric)
            bucket.append(add_success(error, model.diameter))
        published_refined += not refinement.error
        tracked += bool(refinement.tracked)
        if refinement.tracked:
            tracked_ok.append(refined_ok[-1])
        methods[refinement.method or "not refined"] += 1
    processed = len(latencies)
    times = recording.publish_times
    rate = (
        (len(times) - 1) / (times[-1] - times[0])
        if len(times) > 1 and times[-1] > times[0]
        else None
    )
    return {
        "frames": published,
        "camera_rate_hz": None if rate is None else round(rate, 2),
        "processed": processed,
        "init_add_0.1d": round(float(np.mean(init_ok)), 4) if processed else None,
        "refined_add_0.1d": round(float(np.mean(refined_ok)), 4) if processed else None,
        "refined_published": published_refined,
        "tracked": tracked,
        "tracked_add_0.1d": round(float(np.mean(tracked_ok)), 4) if tracked_ok else None,
        "methods": dict(methods),
        "median_latency_ms": round(statistics.median(latencies), 1) if latencies else None,
        "dropped_frames": recording.dropped_frames,
        "device": recording.device,
    }


def write_overlays(recording: Recording, out: Path, rate_hz: float) -> int:
    """Writes overlay_NNNN.png per processed frame and overlay.gif; returns how many frames."""
    frames = sorted(
        (r for r in recording.frames.values() if r.overlay is not None), key=lambda r: r.index
    )
    for record in frames:
        PILImage.fromarray(record.overlay).save(out / f"overlay_{record.index:04d}.png")
    if frames:
        images = [PILImage.fromarray(r.overlay).resize((WIDTH // 2, HEIGHT // 2)) for r in frames]
        images[0].save(
            out / "overlay.gif",
            save_all=True,
            append_images=images[1:],
            duration=max(int(1000 / rate_hz), 40),
            loop=0,
        )
    return len(frames)


# -- main ---------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attn6d-demo", description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="refiner weights")
    parser.add_argument("--objects", default=DEFAULT_OBJECTS_FILE, help="object table YAML")
    parser.add_argument("--object-id", default="demo_object", help="object of the table to show")
    parser.add_argument("--frames", type=int, default=60, help="frames to publish")
    parser.add_argument("--rate", type=float, default=2.0, help="camera frame rate, Hz")
    parser.add_argument("--out", default="demo_out", help="output folder (PNG, GIF, node.log)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--stages", type=int, default=0, help="refinement stages (0: the model's)")
    parser.add_argument(
        "--cpu-threads", type=int, default=0, help="node's PyTorch threads (0: default)"
    )
    parser.add_argument("--seed", type=int, default=0, help="background, noise and detector seed")
    parser.add_argument(
        "--detect-every",
        type=int,
        default=1,
        help="the detector answers every N-th frame; the node tracks the others (tracking.*)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME:=VALUE",
        help="a further node parameter, e.g. min_score:=0.5 (repeatable)",
    )
    parser.add_argument(
        "--startup-timeout", type=float, default=180.0, help="seconds for the node to start"
    )
    parser.add_argument(
        "--record",
        metavar="BAG",
        help="also record camera, camera_info, ground truth, detections and the node's refined/details "
        "into a new rosbag2 (for attn6d-refine-bag)",
    )
    parser.add_argument("--record-storage", choices=("mcap", "sqlite3"), default="mcap")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.frames < 1 or not args.rate > 0 or args.detect_every < 1:
        print(
            f"attn6d-demo: --frames ({args.frames}) and --detect-every ({args.detect_every}) must be "
            f">= 1 and --rate ({args.rate}) > 0",
            file=sys.stderr,
        )
        return 2
    if args.record and Path(args.record).exists():
        print(f"attn6d-demo: --record {args.record} exists; choose a new path", file=sys.stderr)
        return 2
    bad = [p for p in args.param if ":=" not in p]
    if bad:
        print(f"attn6d-demo: --param expects NAME:=VALUE, got {bad}", file=sys.stderr)
        return 2
    args.checkpoint = resolve_path(args.checkpoint)
    args.objects = resolve_path(args.objects)
    if not Path(args.checkpoint).is_file():
        print(
            f"attn6d-demo: checkpoint not found: {args.checkpoint}. Train the demo weights with "
            "`make train-demo`, or pass --checkpoint",
            file=sys.stderr,
        )
        return 2
    from attn6d_ros.objects import read_object_table

    specs = read_object_table(args.objects)
    if args.object_id not in specs:
        print(
            f"attn6d-demo: --object-id {args.object_id!r} not in {args.objects}", file=sys.stderr
        )
        return 2
    model = specs[args.object_id].load()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("overlay_*.png"), out / "overlay.gif"]:
        old.unlink(missing_ok=True)
    # Before rclpy loads: discovery stays on this machine, in a domain of the demo's own, unless the user
    # chose otherwise (the node process inherits both).
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(DEMO_DOMAIN_ID))
    # Shared-memory segments that hold a 640x480 frame (the default 512 KiB does not) and UDP only on
    # 127.0.0.1, for the camera here and the node; a profile the user set wins (docs/node.md, 'Large images').
    if not any(os.environ.get(v) for v in DDS_PROFILE_VARIABLES):
        profile = resolve_path("package://attn6d_ros/config/fastdds_large_frames_loopback.xml")
        for variable in DDS_PROFILE_VARIABLES:
            os.environ[variable] = profile
    with open(out / "node.log", "w") as node_log:
        node = subprocess.Popen(_node_command(args), stdout=node_log, stderr=subprocess.STDOUT)
        try:
            recording, published = _run_graph(args, model, node, out)
        finally:
            if node.poll() is None:
                node.send_signal(signal.SIGINT)
                try:
                    node.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    node.kill()
                    node.wait()
    if recording is None:
        return 1
    summary = summarize(recording, model, published)
    summary["overlay_frames"] = write_overlays(recording, out, args.rate)
    summary["out"] = str(out)
    if args.record:
        summary["bag"] = args.record
    print(json.dumps(summary), flush=True)
    return 0


def _run_graph(args, model, node: subprocess.Popen, out: Path):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    rclpy.init(args=[])  # the demo's own arguments (--param NAME:=VALUE) are not ROS arguments
    recording = Recording()
    bag = None
    try:
        camera, detector, recorder = _make_nodes(args, model, recording)
        if args.record:
            bag = _record_bag(args, recorder)
        executor = SingleThreadedExecutor()
        for n in (camera, detector, recorder):
            executor.add_node(n)
        _log(f"waiting for the refinement node (log: {out / 'node.log'})")
        deadline = time.monotonic() + args.startup_timeout
        while camera.pub_image.get_subscription_count() == 0:
            if node.poll() is not None or time.monotonic() > deadline:
                _log(
                    f"the refinement node did not start (exit code {node.poll()}); see {out / 'node.log'}"
                )
                return None, 0
            executor.spin_once(timeout_sec=0.1)
        # Discovery of the recorder by the node's publishers, so that the first frame's overlay is not missed.
        time.sleep(1.0)
        _log(f"publishing {args.frames} frames at {args.rate} Hz")
        period = 1.0 / args.rate
        next_time = time.monotonic()
        while camera.published < args.frames:
            if time.monotonic() >= next_time:
                camera.publish_next()
                next_time += period
            executor.spin_once(timeout_sec=max(0.0, min(0.02, next_time - time.monotonic())))
        # Let the last frames through: until the last frame's details arrive, or a few periods pass.
        settle = time.monotonic() + max(10.0, 5 * period)
        last = max(recording.frames.values(), key=lambda r: r.index)
        while time.monotonic() < settle and (last.details is None or last.overlay is None):
            executor.spin_once(timeout_sec=0.05)
        diagnostics_until = (
            time.monotonic() + 1.5
        )  # one more /diagnostics message with the final counts
        while time.monotonic() < diagnostics_until:
            executor.spin_once(timeout_sec=0.05)
        camera.world.renderer.close()
        for n in (camera, detector, recorder):
            n.destroy_node()
        return recording, camera.published
    finally:
        if bag is not None:
            bag.close()
            _log(f"recorded {bag.counts} into {args.record}")
        rclpy.try_shutdown()


def _record_bag(args, node):
    """Records the demo's inputs, ground truth and the node's refined/details (bag_record.py)."""
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import CameraInfo, Image
    from vision_msgs.msg import Detection3DArray

    from attn6d_ros.msg import RefinementArray
    from attn6d_ros.ros.bag_record import TopicRecorder

    topics = [
        (f"{NAMESPACE}/camera/image_rect", Image),
        (f"{NAMESPACE}/camera/camera_info", CameraInfo),
        (f"{NAMESPACE}/camera/ground_truth", PoseStamped),
        (f"{NAMESPACE}/detector/detections", Detection3DArray),
        (f"{NAMESPACE}/refined/details", RefinementArray),
    ]
    return TopicRecorder(node, Path(args.record), args.record_storage, topics)


def _log(message: str) -> None:
    print(f"[attn6d-demo] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
