"""`attn6d-refine-bag IN OUT`: refines a recorded rosbag2 offline, as the node would have, without ROS.

Reads IN (a rosbag2 folder or a bare .db3 / .mcap file; sqlite3 or MCAP storage) with `rosbags`, feeds the
image, camera_info and detections topics in recording order through the node's synchronizer (sync.py's
ApproximateTimeSynchronizer, sync.queue_size and sync.slop), and runs every synchronized frame through the
node's steps (frame_jobs.py: jobs from detections or tracks, one Refiner batch, outcomes;
codec.py: the messages), with the node's parameters file (config/refine.yaml); objects the
checkpoint has no weights for (or `method: align` in the object table) are refined by the alignment alone, as
in the node. OUT is a new bag
(same storage as IN unless --storage) with ``refined/detections``, ``refined/pose``, ``refined/details``
(under --namespace) and ``/tf``, each message stamped with its image's header and written at the bag time at
which its frame was complete; --copy-inputs copies the three input topics too.

Differences from the live node, by design: every frame is refined (the node drops frames while busy);
RefinementArray.latency_ms is the milliseconds this tool spent on the frame (read to written); with
tracking.wait_s the waiting is measured in bag time. Images come as sensor_msgs/Image or
sensor_msgs/CompressedImage (JPEG/PNG, image_transport's ``compressed``).

Prints a progress bar on stderr and, at the end, one JSON line on stdout: frames, refined and rejected
objects (with reasons), images that never matched a camera_info or detections, median milliseconds per frame.
Exit codes: 0 done; 1 the bag broke off (OUT holds every frame written before, readable); 2 bad arguments or
input (missing topic, unsupported type, OUT exists); 130 Ctrl-C (OUT closed and readable too).
"""

from __future__ import annotations

import argparse
import bisect
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attn6d_ros.paths import resolve_path
from attn6d_ros.ros import codec, frame_jobs, refiner_setup, sync
from attn6d_ros.ros.bag_io import (
    STORAGES,
    BagError,
    create_writer,
    describe_topics,
    message_typestore,
    open_reader,
    storage_of,
)
from attn6d_ros.ros.codec import TYPE_NAMES, MessageTypes
from attn6d_ros.ros.params import NodeConfig, ParameterError, ignored_parameters
from attn6d_ros.ros.params_file import read_params_file
from attn6d_ros.ros.tracking import PendingImages, Tracker

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
DETECTIONS = "vision_msgs/msg/Detection3DArray"
ACCEPTED = {
    "image": (IMAGE, COMPRESSED),
    "camera_info": (CAMERA_INFO,),
    "detections": (DETECTIONS,),
}
KINDS = ("image", "camera_info", "detections")  # the synchronizer's input order, as in the node
DEFAULT_PARAMS = "package://attn6d_ros/config/refine.yaml"
# The node's synchronizer as sync.py implements it (message_filters' semantics). Where message_filters is
# installed the node uses that instead, whose stamps must be rclpy's (Time.from_msg refuses rosbags').
_Synchronizer = sync._FallbackApproximateTimeSynchronizer


class InputError(ValueError):
    """Arguments or an input bag the tool cannot work with (exit code 2)."""


@dataclass
class Summary:
    """What the JSON line reports."""

    images: int = 0
    frames: int = 0
    skipped_every: int = 0
    tracked_frames: int = 0
    refined: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    rejected_examples: dict[str, str] = field(default_factory=dict)
    rejected_frames: int = 0
    late_detections: int = 0
    detections_over_max: int = 0
    frame_ms: list[float] = field(default_factory=list)
    compute_ms: list[float] = field(default_factory=list)

    def reject(self, kind: str, error: str) -> None:
        self.rejected[kind] = self.rejected.get(kind, 0) + 1
        self.rejected_examples.setdefault(kind, error)


def _topic(name: str) -> str:
    return name if name.startswith("/") else "/" + name


def _output_topic(namespace: str, name: str) -> str:
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return f"{ns}/{name}"


class BagRefiner:
    """The node's per-frame steps with a Refiner, writing each frame's outputs to a rosbags Writer."""

    def __init__(
        self, refiner: Any, cfg: NodeConfig, typestore: Any, writer: Any, namespace: str,
        boxes: dict, warn: Any,
    ) -> None:  # fmt: skip
        self.refiner = refiner
        self.cfg = cfg
        self.typestore = typestore
        self.writer = writer
        self.types = MessageTypes.from_typestore(typestore)
        self.boxes = boxes
        self.tracker = Tracker()
        self.summary = Summary()
        self._warn = warn
        self.connections = {
            topic: writer.add_connection(name, TYPE_NAMES[msg], typestore=typestore)
            for topic, name, msg in (
                ("details", _output_topic(namespace, "refined/details"), "RefinementArray"),
                ("detections", _output_topic(namespace, "refined/detections"), "Detection3DArray"),
                ("pose", _output_topic(namespace, "refined/pose"), "PoseStamped"),
                ("tf", "/tf", "TFMessage"),
            )
        }

    def _write(self, kind: str, msg: Any, t_bag_ns: int) -> None:
        raw = self.typestore.serialize_cdr(msg, msg.__msgtype__)
        self.writer.write(self.connections[kind], t_bag_ns, raw)

    def process(self, image: Any, info: Any, detections: Any | None, t_bag_ns: int) -> None:
        """One frame, as node.RefineNode._process; `detections` None: an image-only (tracked) frame."""
        tic = time.perf_counter()
        cfg, refiner, summary = self.cfg, self.refiner, self.summary
        header = image.header
        stamp_s = codec.stamp_seconds(header)
        plan = frame_jobs.plan_frame(detections, header, refiner, self.tracker, cfg)
        if detections is None:
            if not plan.jobs:
                return
            summary.tracked_frames += 1
        summary.detections_over_max += plan.dropped
        if plan.duplicates:
            self._warn("duplicate_ids", f"detections carry duplicate ids {plan.duplicates}")
        decoded = codec.decode_frame(image, info)
        for key, message, _ in decoded.warnings:
            self._warn(key, message)
        compute_ms = frame_jobs.run_frame(
            refiner, self.tracker, plan.jobs, decoded.error, decoded.rgb, decoded.K, stamp_s, cfg
        )
        out = codec.frame_messages(self.types, header, plan.jobs, tf_prefix=cfg.tf_prefix,
                                   boxes=self.boxes, compute_ms=compute_ms)  # fmt: skip
        summary.frames += 1
        summary.rejected_frames += decoded.error is not None
        for job in plan.jobs:
            if job.published:
                summary.refined += 1
            else:
                kind = "frame_rejected" if decoded.error else job.failure_kind
                summary.reject(kind or "failed_detections", job.reported_error or "")
        if decoded.error is None:
            self._write("detections", out.detections, t_bag_ns)
            for pose in out.poses:
                self._write("pose", pose, t_bag_ns)
            if cfg.publish_tf and out.transforms:
                if header.frame_id:
                    self._write("tf", self.types.TFMessage(transforms=out.transforms), t_bag_ns)
                else:
                    self._warn("tf_frame", "image.header.frame_id is empty: no TF written")
        # This tool's time on the frame (module docstring).
        out.details.latency_ms = float((time.perf_counter() - tic) * 1000.0)
        self._write("details", out.details, t_bag_ns)
        summary.frame_ms.append((time.perf_counter() - tic) * 1000.0)
        if any(job.result is not None for job in plan.jobs):
            summary.compute_ms.append(compute_ms)


def _pick_topic(kind: str, given: str | None, topics: dict[str, str], reader: Any) -> str:
    """The topic to read for `kind`: the one given, else the only topic of an accepted type."""
    if given is not None:
        topic = _topic(given)
        if topic not in topics:
            raise InputError(
                f"--{kind.replace('_', '-')} topic {topic!r} is not in the bag; it has:\n"
                f"{describe_topics(reader)}"
            )
    else:
        candidates = [t for t, msgtype in topics.items() if msgtype in ACCEPTED[kind]]
        if len(candidates) != 1:
            found = "none" if not candidates else f"several: {candidates}"
            raise InputError(
                f"no --{kind.replace('_', '-')} topic given and the bag has {found} of type "
                f"{' or '.join(ACCEPTED[kind])}; its topics:\n{describe_topics(reader)}"
            )
        topic = candidates[0]
    if topics[topic] not in ACCEPTED[kind]:
        raise InputError(
            f"--{kind.replace('_', '-')} topic {topic!r} has type {topics[topic]!r}; "
            f"attn6d-refine-bag reads {' or '.join(ACCEPTED[kind])} there"
        )
    return topic


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attn6d-refine-bag", description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )  # fmt: skip
    parser.add_argument("input", metavar="IN", help="rosbag2 folder, .db3 or .mcap file")
    parser.add_argument("output", metavar="OUT", help="new rosbag2 folder")
    parser.add_argument(
        "--image", help="image topic (Image or CompressedImage); default: the only one"
    )
    parser.add_argument(
        "--camera-info", help="camera_info topic; default: the only CameraInfo topic"
    )
    parser.add_argument("--detections", help="Detection3DArray topic; default: the only one")
    parser.add_argument("--params", default=DEFAULT_PARAMS, help="the node's parameters file")
    parser.add_argument(
        "--device", help="overrides the parameters file: auto | cpu | cuda | cuda:N"
    )
    parser.add_argument(
        "--start", type=float, help="first bag time to read, seconds after the bag's start"
    )
    parser.add_argument(
        "--end", type=float, help="last bag time to read, seconds after the bag's start"
    )
    parser.add_argument(
        "--every", type=int, default=1, help="refine every N-th synchronized frame"
    )
    parser.add_argument(
        "--namespace", default="/", help="the outputs' namespace (refined/*); /tf stays"
    )
    parser.add_argument(
        "--storage", choices=sorted(STORAGES), help="OUT's storage (default: IN's)"
    )
    parser.add_argument(
        "--copy-inputs", action="store_true", help="copy the three input topics to OUT"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (InputError, BagError, ParameterError, FileNotFoundError) as exc:
        print(f"attn6d-refine-bag: {exc}", file=sys.stderr)
        return 2


def _check_arguments(args: argparse.Namespace) -> tuple[Path, Path]:
    if args.every < 1:
        raise InputError(f"--every must be >= 1, got {args.every}")
    for name in ("start", "end"):
        value = getattr(args, name)
        if value is not None and not (np.isfinite(value) and value >= 0):
            raise InputError(f"--{name} must be a number of seconds >= 0, got {value}")
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise InputError(f"--end ({args.end}) must be after --start ({args.start})")
    source, target = Path(args.input), Path(args.output)
    if target.resolve() == source.resolve() or source.resolve() in target.resolve().parents:
        raise InputError(f"OUT {str(target)!r} must not be IN {str(source)!r} or inside it")
    if (target.exists() or target.is_symlink()) and not args.overwrite:
        raise InputError(f"output {str(target)!r} exists; pass --overwrite to replace it")
    return source, target


def _run(args: argparse.Namespace) -> int:
    source, target = _check_arguments(args)
    cfg, unknown = read_params_file(resolve_path(args.params))
    for warning in ignored_parameters(unknown):  # removed ones (an older parameters file), typos
        print(f"attn6d-refine-bag: {warning}", file=sys.stderr)
    if args.device is not None:
        cfg = cfg.with_parameters({"device": args.device})
    reader = open_reader(source)
    try:
        return _refine(args, cfg, reader, target)
    finally:
        reader.close()


def _refine(args: argparse.Namespace, cfg: NodeConfig, reader: Any, target: Path) -> int:
    from tqdm import tqdm

    topics = {t: info.msgtype or "?" for t, info in reader.topics.items()}
    chosen = {kind: _pick_topic(kind, getattr(args, kind), topics, reader) for kind in KINDS}
    connections = [c for c in reader.connections if c.topic in chosen.values()]
    kind_of = {c.id: next(k for k in KINDS if chosen[k] == c.topic) for c in connections}
    typestore = message_typestore(
        connections, [topics[chosen[k]] for k in KINDS] + list(TYPE_NAMES.values())
    )
    start = None if args.start is None else reader.start_time + round(args.start * 1e9)
    stop = None if args.end is None else reader.start_time + round(args.end * 1e9) + 1
    checkpoint, specs = refiner_setup.check_inputs(cfg)
    setup = refiner_setup.load_refiner(cfg, checkpoint, specs, lambda line: None)
    refiner, boxes, device = setup.refiner, setup.boxes, setup.device
    writer = create_writer(target, args.storage or storage_of(reader), overwrite=args.overwrite)
    warned: set[str] = set()

    def warn(key: str, message: str) -> None:
        if key not in warned:
            warned.add(key)
            tqdm.write(f"attn6d-refine-bag: warning: {message}", file=sys.stderr)

    error, code = None, 0
    try:
        tool = BagRefiner(refiner, cfg, typestore, writer, args.namespace, boxes, warn)
        copies = {}
        if args.copy_inputs:
            for c in connections:
                copies[c.id] = writer.add_connection(
                    c.topic, c.msgtype, typestore=typestore,
                    offered_qos_profiles=getattr(c.ext, "offered_qos_profiles", ()),
                )  # fmt: skip
        images_total = sum(c.msgcount for c in connections if kind_of[c.id] == "image")
        bar = tqdm(total=images_total if start is None and stop is None else None, unit="frame",
                   desc="refining", disable=args.no_progress, file=sys.stderr)  # fmt: skip
        feeder = _Feeder(tool, cfg, args.every)
        try:
            feeder.run(reader, connections, kind_of, typestore, copies, start, stop, bar)
        except _BagBrokeError as exc:
            error, code = str(exc), 1
        except KeyboardInterrupt:
            error, code = "interrupted (Ctrl-C)", 130
        finally:
            bar.close()
    finally:
        writer.close()  # OUT stays readable with every frame written so far
        refiner.renderer.close()
    summary = _summary_json(tool, feeder, device, target, error)
    unmatched = summary["unmatched_images"]
    if unmatched["no_camera_info"]:
        print(f"attn6d-refine-bag: {unmatched['no_camera_info']} image(s) had no camera_info within "
              f"sync.slop {cfg.sync_slop} s: not refined", file=sys.stderr)  # fmt: skip
    if error:
        print(f"attn6d-refine-bag: {error}; {target} holds the {tool.summary.frames} frame(s) written "
              "before it", file=sys.stderr)  # fmt: skip
    print(json.dumps(summary), flush=True)
    return code


class _BagBrokeError(RuntimeError):
    """The input bag could not be read further (truncated or corrupt)."""


class _Feeder:
    """Feeds the bag's messages through the node's synchronizers and hands complete frames to the tool."""

    def __init__(self, tool: BagRefiner, cfg: NodeConfig, every: int) -> None:
        self.tool = tool
        self.cfg = cfg
        self.every = every
        self.filters = {kind: sync.SimpleFilter() for kind in KINDS}
        inputs = [self.filters[k] for k in KINDS]
        self.synced: list[tuple] = []
        synchronizer = _Synchronizer(inputs, cfg.sync_queue_size, cfg.sync_slop)
        synchronizer.registerCallback(lambda *msgs: self.synced.append(msgs))
        self.waiting = cfg.tracking_enabled and cfg.tracking_wait_s > 0
        self.pending: PendingImages[tuple] = PendingImages(cfg.sync_queue_size)
        self.pairs: list[tuple] = []
        if (
            self.waiting
        ):  # tracking.wait_s: images whose detections do not come (node._on_image_pair)
            pair_sync = _Synchronizer(inputs[:2], cfg.sync_queue_size, cfg.sync_slop)
            pair_sync.registerCallback(lambda *msgs: self.pairs.append(msgs))
        self.stamps: dict[str, list[int]] = {kind: [] for kind in KINDS}
        self.synced_images: set[int] = set()
        self.count = 0

    def run(self, reader: Any, connections: list, kind_of: dict, typestore: Any, copies: dict,
            start: int | None, stop: int | None, bar: Any) -> None:  # fmt: skip
        messages = reader.messages(connections=connections, start=start, stop=stop)
        index = 0
        while True:
            try:
                item = next(messages, None)
            except (
                Exception
            ) as exc:  # storage errors: truncated file, malformed database, bad chunk
                raise _BagBrokeError(
                    f"the input bag broke off after {index} message(s): {type(exc).__name__}: {exc}"
                ) from exc
            if item is None:
                break
            connection, t_bag, raw = item
            index += 1
            try:
                msg = typestore.deserialize_cdr(raw, connection.msgtype)
            except Exception as exc:
                raise _BagBrokeError(
                    f"message {index} of the input bag ({connection.topic}, {connection.msgtype}, bag time "
                    f"{t_bag} ns) cannot be decoded ({type(exc).__name__}: {exc}): the bag is corrupt"
                ) from exc
            if connection.id in copies:
                self.tool.writer.write(copies[connection.id], t_bag, raw)
            kind = kind_of[connection.id]
            self.stamps[kind].append(codec.stamp_ns(msg.header))
            if kind == "image":
                self.tool.summary.images += 1
                bar.update(1)
            self.filters[kind].signalMessage(msg)
            self._drain(t_bag)
        self._drain(None)

    def _drain(self, t_bag: int | None) -> None:
        """Frames completed by the last message (and image-only frames whose wait is over)."""
        # The node's order: the three-input synchronizer's callback runs before the pair's.
        for image, info, detections in self.synced:
            stamp_ns = codec.stamp_ns(image.header)
            self.synced_images.add(stamp_ns)
            if self.pending.synced(stamp_ns) is not None:
                self.tool.summary.late_detections += 1
                continue
            self._frame(image, info, detections, t_bag)
        self.synced.clear()
        for image, info in self.pairs:
            if t_bag is not None:
                self.pending.add(codec.stamp_ns(image.header), (image, info), t_bag * 1e-9)
        self.pairs.clear()
        if self.waiting:
            now_s = float("inf") if t_bag is None else t_bag * 1e-9
            for stamp_ns, (image, info), arrived in self.pending.release(
                now_s, self.cfg.tracking_wait_s, has_tracks=len(self.tool.tracker) > 0
            ):
                self.synced_images.add(stamp_ns)
                t_due = round((arrived + self.cfg.tracking_wait_s) * 1e9)
                self._frame(image, info, None, t_due if t_bag is None else t_bag)

    def _frame(self, image: Any, info: Any, detections: Any | None, t_bag: int | None) -> None:
        self.count += 1
        if (self.count - 1) % self.every:
            self.tool.summary.skipped_every += 1
            return
        self.tool.process(image, info, detections, t_bag if t_bag is not None else 0)

    def unmatched(self) -> dict[str, int]:
        """Images never synchronized: without a camera_info (or detections) within sync.slop, or not."""
        slop_ns = round(self.cfg.sync_slop * 1e9)
        infos, detections = sorted(self.stamps["camera_info"]), sorted(self.stamps["detections"])
        counts = {"no_camera_info": 0, "no_detections": 0, "not_synchronized": 0}
        for stamp in self.stamps["image"]:
            if stamp in self.synced_images:
                continue
            if not _near(infos, stamp, slop_ns):
                counts["no_camera_info"] += 1
            elif not _near(detections, stamp, slop_ns):
                counts["no_detections"] += 1
            else:
                counts["not_synchronized"] += 1
        return counts


def _near(sorted_stamps: list[int], stamp: int, slop_ns: int) -> bool:
    i = bisect.bisect_left(sorted_stamps, stamp)
    return any(
        abs(sorted_stamps[j] - stamp) < slop_ns for j in (i - 1, i) if 0 <= j < len(sorted_stamps)
    )


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _summary_json(
    tool: BagRefiner, feeder: _Feeder, device: str, out: Path, error: str | None
) -> dict:
    s = tool.summary
    summary = {
        "images": s.images,
        "frames": s.frames,
        "skipped_every": s.skipped_every,
        "tracked_frames": s.tracked_frames,
        "refined": s.refined,
        "rejected": dict(sorted(s.rejected.items())),
        "rejected_examples": dict(sorted(s.rejected_examples.items())),
        "rejected_frames": s.rejected_frames,
        "unmatched_images": feeder.unmatched(),
        "late_detections": s.late_detections,
        "detections_over_max": s.detections_over_max,
        "median_ms_per_frame": _median(s.frame_ms),
        "median_compute_ms": _median(s.compute_ms),
        "device": device,
        "out": str(out),
    }
    if error:
        summary["error"] = error
    return summary


if __name__ == "__main__":
    sys.exit(main())
