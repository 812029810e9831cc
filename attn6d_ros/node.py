"""The ROS 2 refinement node `attn6d_refiner`: synchronized image, camera_info and coarse detections in;
refined poses, details, TF, an attention overlay and diagnostics out. The node is glue around `Refiner`
(refiner.py).

Topics (relative, remappable), every output stamped with the input image's header (stamp and frame_id):

- in  ``image`` (sensor_msgs/Image), ``camera_info`` (sensor_msgs/CameraInfo), ``detections``
  (vision_msgs/Detection3DArray: class id from results[0].hypothesis.class_id, coarse pose from
  results[0].pose.pose, in the image's optical frame), approximately synchronized (sync.queue_size,
  sync.slop).
- out ``refined/detections`` (vision_msgs/Detection3DArray), ``refined/pose`` (geometry_msgs/PoseStamped, one
  per refined object), ``refined/details`` (attn6d_ros/RefinementArray), ``/tf``, ``debug/attention_overlay``
  (sensor_msgs/Image rgb8, drawn only while subscribed, at most overlay.max_rate_hz), ``debug/markers``
  (visualization_msgs/MarkerArray for RViz, markers.py; only while subscribed), ``/diagnostics``.
- service ``~/reset_tracking`` (std_srvs/Trigger).

Alignment (align, on by default; align_turn_deg): the region-based alignment (align/) as the final stage.
Objects the checkpoint has no trained weights for (objects table `method`, objects.py) are refined by the
alignment alone with several starts (align_only_turn_deg); refined/details says how each pose was refined.
The alignment's contour templates are prepared at start-up (built once per mesh and cached on disk; the log
says how long it took and whether the cache had them), or on the first frame that needs them after a run-time
change of align or tracking.method.

Tracking (tracking.*): a frame whose detection array is empty is refined from the last refined poses
(tracking.py); with tracking.method align (the default) by the alignment alone, without the network, so that
between two detector answers the pose follows the object at camera rate. With tracking.wait_s > 0, images
for which no detections arrive at all are tracked too: a second synchronizer pairs image and camera_info; a
pair still without detections tracking.wait_s after it arrived goes to the worker as an image-only frame
(when there are tracks). Each image stamp is refined once: detections arriving for an image already refined
from the tracks are ignored, with a warning to raise tracking.wait_s. In the latest-only slot a frame with
detections is never replaced by an image-only one.

What is published for a detection that is not refined: it is left out of refined/detections, refined/pose
and TF (a coarse pose is never published as if refined), and refined/details reports it with `error` naming
the field and the value. A refinement scoring below `min_score` is treated the same way; details carries its
refined pose, score and the reason. A frame that cannot be used at all (bad image or camera_info) publishes
only refined/details, with the frame's error on every detection.

At most max_detections detections of a frame are refined (the highest-scored; a warning counts the rest).
Camera_info arriving without images (large best-effort frames lost in Fast DDS's shared memory) is reported in
/diagnostics and a warning that names the fix (config/fastdds_large_frames.xml). The first SIGINT or SIGTERM
stops the node; later ones during the clean-up are only logged (shutdown.py): exit code 0.

Threads: the executor thread runs the synchronizer, timers and the service, and only puts frames into a
latest-only slot (backpressure.py); one worker thread owns the Refiner (its OpenGL context must stay on the
thread that created it), refines the newest frame and publishes the results (publishing from another thread
is fine in rclpy). Frames replaced in the slot while the worker is busy are counted as dropped.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from attn6d_ros import conversions, frame_jobs, sync, tf_publisher
from attn6d_ros.backpressure import LatestSlot
from attn6d_ros.compressed_image import image_msg_to_rgb
from attn6d_ros.conversions import CoarseDetection
from attn6d_ros.diagnostics import NodeStats, diagnostic_status, missing_images
from attn6d_ros.frame_jobs import Job as _Job
from attn6d_ros.markers import MarkerItem, marker_array
from attn6d_ros.mesh import UNIT_SCALE
from attn6d_ros.msg import RefinementArray
from attn6d_ros.objects import read_object_table, uses_network
from attn6d_ros.params import (
    NodeConfig,
    ParameterError,
    declare_parameters,
    split_removed_parameters,
)
from attn6d_ros.paths import resolve_path, share_dir
from attn6d_ros.refinement_messages import MessageTypes, frame_messages, object_box
from attn6d_ros.shutdown import ShutdownSignals
from attn6d_ros.tracking import PendingImages, Tracker

try:
    from vision_msgs.msg import Detection3DArray
except ImportError as _exc:  # pragma: no cover - a broken installation
    raise ImportError(
        "attn6d_ros.node needs vision_msgs (apt: ros-$ROS_DISTRO-vision-msgs)"
    ) from _exc

NODE_NAME = "attn6d_refiner"
PENDING_CHECK_S = 0.01  # how often images waiting for detections are checked (tracking.wait_s)
WARN_REPEAT_S = (
    5.0  # a repeated per-frame warning is logged at most this often (per kind of problem)
)
# Parameters rclpy declares itself; anything else in the overrides that we do not declare is a typo.
_ROS_OWN_PARAMETERS = ("use_sim_time", "start_type_description_service", "qos_overrides.")


class StartupError(RuntimeError):
    """The node cannot start (model, objects or device); the message says why."""


@dataclass
class _Frame:
    image: Image
    info: CameraInfo
    detections: Detection3DArray
    synced_at: float  # time.monotonic() when the synchronizer delivered it
    image_only: bool = (
        False  # no detections arrived in time: refined from the tracks (tracking.wait_s)
    )


class RefineNode(Node):
    """Refines coarse 6D poses from a detector (module docstring). Parameters: params.NodeConfig.

    Raises (from the constructor):
        ParameterError: a parameter value it cannot run with (names the parameter and the value).
        FileNotFoundError: the checkpoint, object table or a mesh is missing.
        StartupError: the model could not be loaded or warmed up on the requested device.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        try:
            self._setup()
        except BaseException:
            self._stop_worker()
            raise

    # -- start-up -----------------------------------------------------------------------------------

    def _setup(self) -> None:
        log = self.get_logger()
        self.config: NodeConfig = declare_parameters(self)
        self._warn_unknown_parameters()
        cfg = self.config
        checkpoint = Path(resolve_path(cfg.checkpoint))
        if not checkpoint.is_file():
            raise ParameterError(
                "checkpoint",
                f"parameter 'checkpoint': file not found: {checkpoint} (from {cfg.checkpoint!r}); "
                "train one with `make train-demo` or pass a path",
            )
        try:
            self._object_specs = read_object_table(resolve_path(cfg.objects_file))
        except (FileNotFoundError, ValueError) as exc:
            raise ParameterError(
                "objects_file", f"parameter 'objects_file' ({cfg.objects_file!r}): {exc}"
            ) from exc

        self._stats = NodeStats()
        self._slot: LatestSlot[_Frame] = LatestSlot()
        self._tracker = Tracker()
        self._warned: dict[str, float] = {}
        self._warned_once: set[str] = set()
        self._last_overlay = 0.0
        self._seen_stamps: dict[str, deque] = {
            k: deque(maxlen=3) for k in ("image", "camera_info", "detections")
        }
        self._last_seen: dict[str, float] = {}
        self._last_sync = 0.0
        self._sync_problem = ""
        self._image_problem = ""
        self._first_both = 0.0
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.device = "?"
        self._model_stages = (1, False)  # (num_stages, shared_stages), set by the worker
        self._boxes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._alignment_ready: set[str] = set()  # objects whose alignment templates are loaded
        # refined/* are built by refinement_messages.py (shared with the bag tool).
        self._msg_types = MessageTypes.from_rclpy()
        self._marker_meshes: dict[str, tuple[Path, float, float]] = {}  # mesh, scale, diameter
        # (image, camera_info) pairs waiting for their detections (tracking.wait_s).
        self._pending: PendingImages[tuple[Image, CameraInfo]] = PendingImages(cfg.sync_queue_size)
        self._newest_frame_ns = -1  # newest image stamp sent to the worker

        # Outputs first: the worker publishes as soon as frames come.
        self._pub_detections = self.create_publisher(Detection3DArray, "refined/detections", 10)
        self._pub_pose = self.create_publisher(PoseStamped, "refined/pose", 10)
        self._pub_details = self.create_publisher(RefinementArray, "refined/details", 10)
        self._pub_overlay = self.create_publisher(Image, "debug/attention_overlay", 2)
        self._pub_markers = self.create_publisher(MarkerArray, "debug/markers", 2)
        self._pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._tf = tf_publisher.TransformBroadcaster(self)

        self._worker = threading.Thread(
            target=self._run_worker, args=(checkpoint,), name="attn6d_inference", daemon=True
        )
        self._worker.start()
        self._ready.wait()
        if self._startup_error is not None:
            error = self._startup_error
            if isinstance(error, ParameterError | FileNotFoundError):
                raise error
            raise StartupError(f"cannot load the refiner: {error}") from error

        self.add_on_set_parameters_callback(self._check_stages)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._subscribe()
        self.create_service(Trigger, "~/reset_tracking", self._reset_tracking)
        self.create_timer(cfg.diagnostics_period_s, self._publish_diagnostics)
        self.create_timer(0.5, self._check_sync)
        # Runs only while images wait for their detections (started by _on_image_pair).
        self._pending_timer = self.create_timer(PENDING_CHECK_S, self._flush_pending)
        self._pending_timer.cancel()
        log.info(
            f"ready: device {self.device}, checkpoint {checkpoint}, objects "
            f"{sorted(self._object_specs)}; {_fallbacks_text()}; {_dds_text()}"
        )
        log.info(f"parameters: {cfg.as_parameters()}")

    def _warn_unknown_parameters(self) -> None:
        declared = set(self.config.as_parameters())
        # rclpy keeps the values from YAML and -p here; it has no public accessor for them.
        overrides = getattr(self, "_parameter_overrides", {})
        unknown = sorted(
            name for name in overrides
            if name not in declared and not name.startswith(_ROS_OWN_PARAMETERS)
        )  # fmt: skip
        removed, unknown = split_removed_parameters(unknown)
        if removed:  # depth_search, region_fit...: set in an older parameters file
            self.get_logger().warning(f"ignoring {removed}")
        if unknown:
            self.get_logger().warning(
                f"ignoring unknown parameters {unknown} (typos?); known: {sorted(declared)}"
            )

    def _subscribe(self) -> None:
        cfg = self.config
        image_qos = _qos(cfg.image_reliability, cfg.image_depth)
        detections_qos = _qos(cfg.detections_reliability, cfg.detections_depth)
        inputs = []
        # image_transport's compressed publisher adds /compressed to the (remapped) image topic.
        image_type, image_topic = Image, "image"
        if cfg.image_transport == "compressed":
            image_type = CompressedImage
            image_topic = self.resolve_topic_name("image") + "/compressed"
        for kind, topic, msg_type, qos, parameter in (
            ("image", image_topic, image_type, image_qos, "qos.image.reliability"),
            ("camera_info", "camera_info", CameraInfo, image_qos, "qos.image.reliability"),
            ("detections", "detections", Detection3DArray, detections_qos,
             "qos.detections.reliability"),
        ):  # fmt: skip
            events = SubscriptionEventCallbacks(
                incompatible_qos=lambda info, k=kind, p=parameter: self._incompatible_qos(
                    k, p, info
                )
            )
            subscriber = sync.Subscriber(
                self, msg_type, topic, qos_profile=qos, event_callbacks=events
            )
            subscriber.registerCallback(lambda msg, k=kind: self._on_input(k, msg))
            inputs.append(subscriber)
        self._inputs = inputs
        self._synchronizer = sync.ApproximateTimeSynchronizer(
            inputs, cfg.sync_queue_size, cfg.sync_slop
        )
        self._synchronizer.registerCallback(self._on_synced)
        # Image and camera_info alone, for tracking images whose detections never come (tracking.wait_s).
        self._pair_synchronizer = sync.ApproximateTimeSynchronizer(
            inputs[:2], cfg.sync_queue_size, cfg.sync_slop
        )
        self._pair_synchronizer.registerCallback(self._on_image_pair)
        self.get_logger().info(
            f"subscribed: {[s.sub.topic_name for s in inputs]}; image QoS {cfg.image_reliability} "
            f"depth {cfg.image_depth}, detections QoS {cfg.detections_reliability} depth "
            f"{cfg.detections_depth}; sync queue {cfg.sync_queue_size}, slop {cfg.sync_slop} s"
        )

    def _incompatible_qos(self, kind: str, parameter: str, info: Any) -> None:
        self.get_logger().warning(
            f"a publisher on {kind!r} offers a QoS incompatible with this subscription "
            f"(policy {info.last_policy_kind}); nothing from it arrives. Check {parameter!r} "
            f"(best_effort matches every publisher)"
        )

    # -- executor thread: inputs, parameters, service, timers ---------------------------------------

    def _on_input(self, kind: str, msg: Any) -> None:
        now = time.monotonic()
        self._stats.arrived(kind, now)
        self._last_seen[kind] = now
        stamp = msg.header.stamp
        self._seen_stamps[kind].append(f"{stamp.sec}.{stamp.nanosec:09d}")

    def _on_synced(self, image: Image, info: CameraInfo, detections: Detection3DArray) -> None:
        now = time.monotonic()
        self._last_sync = now
        self._stats.arrived("synced", now)
        self._stats.add("synced")
        stamp_ns = _stamp_ns(image.header)
        arrived = self._pending.delivered(stamp_ns)
        if arrived is not None:
            self._stats.add("late_detections")
            self._warn(
                "late_detections",
                f"detections for image {_stamp_text(image)} arrived {now - arrived:.3f} s after the image, "
                f"which was already refined from the tracks (tracking.wait_s {self.config.tracking_wait_s}); "
                "they are ignored: set tracking.wait_s above the detector's latency",
            )
            return
        self._newest_frame_ns = max(self._newest_frame_ns, stamp_ns)
        self._slot.put(_Frame(image, info, detections, now), priority=1)

    def _on_image_pair(self, image: Image, info: CameraInfo) -> None:
        cfg = self.config
        if not (cfg.tracking_enabled and cfg.tracking_wait_s > 0):
            return
        kept = self._pending.add(_stamp_ns(image.header), (image, info), time.monotonic())
        if kept and self._pending_timer.is_canceled():
            self._pending_timer.reset()

    def _flush_pending(self) -> None:
        """Sends images whose detections are later than tracking.wait_s to the worker as image-only frames."""
        if not self._pending:
            self._pending_timer.cancel()
            return
        cfg = self.config
        now = time.monotonic()
        active = cfg.tracking_enabled and cfg.tracking_wait_s > 0  # both can change at run time
        for stamp_ns, (image, info), arrived in self._pending.due(
            now, cfg.tracking_wait_s if active else 0.0
        ):
            # Only newer than every frame sent (never publish out of order), and only with tracks to refine.
            if not active or stamp_ns <= self._newest_frame_ns or not len(self._tracker):
                continue
            self._newest_frame_ns = stamp_ns
            self._pending.tracked(stamp_ns, arrived)
            self._stats.arrived("synced", now)
            empty = Detection3DArray(header=image.header)
            self._slot.put(_Frame(image, info, empty, now, image_only=True), priority=0)

    def _check_stages(self, parameters: list) -> SetParametersResult:
        for parameter in parameters:
            if parameter.name == "stages":
                reason = _stages_problem(parameter.value, *self._model_stages)
                if reason:
                    return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters: list) -> None:
        ours = {p.name: p.value for p in parameters if p.name in self.config.as_parameters()}
        if ours:
            self.config = self.config.with_parameters(ours)
            self.get_logger().info(f"parameters changed: {ours}")

    def _reset_tracking(
        self, request: Trigger.Request, response: Trigger.Response
    ) -> Trigger.Response:
        count = self._tracker.reset()
        response.success = True
        response.message = f"cleared {count} track(s)"
        self.get_logger().info(f"reset_tracking: {response.message}")
        return response

    def _check_sync(self) -> None:
        """Warns when camera_info arrives without images (diagnostics.missing_images), and when images and
        detections both arrive but never synchronize, naming the stamps seen."""
        now = time.monotonic()
        self._image_problem = missing_images(self._stats, now, _dds_profile_hint())
        if self._image_problem:
            self._warn("missing_images", self._image_problem, repeat_s=WARN_REPEAT_S)
        warn_after = self.config.sync_warn_after_s
        recent = {k: now - t <= warn_after for k, t in self._last_seen.items()}
        if not (recent.get("image") and recent.get("detections")):
            self._first_both = 0.0
            self._sync_problem = ""
            return
        if not self._first_both:
            self._first_both = now
        waiting_since = max(self._first_both, self._last_sync)
        if now - waiting_since < warn_after:
            self._sync_problem = ""
            return
        stamps = {k: list(v) for k, v in self._seen_stamps.items()}
        missing = "" if recent.get("camera_info") else " No camera_info arrives: it is needed too."
        self._sync_problem = (
            f"no synchronized frame for {now - waiting_since:.1f} s although images and detections arrive "
            f"(sync.slop {self.config.sync_slop} s). Latest stamps: image {stamps['image']}, camera_info "
            f"{stamps['camera_info']}, detections {stamps['detections']}; the detector must copy the "
            f"image header's stamp.{missing}"
        )
        self._warn("sync", self._sync_problem, repeat_s=warn_after)

    def _publish_diagnostics(self) -> None:
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [
            diagnostic_status(
                self._stats,
                name=f"{self.get_fully_qualified_name()}: pose refinement",
                device=self.device,
                worker_alive=self._worker is not None and self._worker.is_alive(),
                sync_problem=self._sync_problem,
                image_problem=self._image_problem,
                dropped=self._slot.dropped,
                tracks=len(self._tracker),
            )
        ]
        self._pub_diagnostics.publish(array)

    # -- worker thread ------------------------------------------------------------------------------

    def _run_worker(self, checkpoint: Path) -> None:
        try:
            refiner = self._load_refiner(checkpoint)
        except (
            BaseException
        ) as exc:  # any failure must reach __init__, which exits non-zero with it
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stopping.is_set():
                frame = self._slot.take(timeout=0.5)
                if frame is None:
                    continue
                try:
                    self._process(refiner, frame)
                except Exception:  # keep serving frames; the failure is logged and counted
                    if self._stopping.is_set():  # publishers already gone while shutting down
                        self.get_logger().debug(
                            f"frame dropped at shutdown:\n{traceback.format_exc()}"
                        )
                        break
                    self._stats.add("internal_errors")
                    self.get_logger().error(
                        f"internal error on a frame:\n{traceback.format_exc()}"
                    )
        finally:
            refiner.renderer.close()

    def _load_refiner(self, checkpoint: Path) -> Any:
        # PyTorch is imported here, after parameters and files were checked: start-up errors show in < 1 s.
        import torch

        from attn6d_ros.refiner import Refiner, resolve_device

        cfg = self.config
        if cfg.cpu_threads:
            torch.set_num_threads(cfg.cpu_threads)
        try:
            device = resolve_device(cfg.device)
        except ValueError as exc:
            raise ParameterError("device", f"parameter 'device': {exc}") from exc
        if cfg.device == "auto":
            self.get_logger().info(f"device 'auto' -> {device}")
        refiner = Refiner.from_checkpoint(checkpoint, device=str(device))
        frame_jobs.apply_align_settings(refiner, cfg)
        self.device = str(device)
        if device.type == "cuda":
            self.device += f" ({torch.cuda.get_device_name(device)})"
        for object_id, spec in self._object_specs.items():
            model = spec.load()
            refiner.add_object(
                object_id, model, network=uses_network(spec, refiner.trained_on(object_id))
            )
            self._boxes[object_id] = object_box(model)
            self._marker_meshes[object_id] = (spec.mesh, UNIT_SCALE[spec.units], model.diameter)
        if refiner.align_only:
            self.get_logger().info(
                f"refined by the alignment alone (no trained weights in {checkpoint.name}, or method "
                f"'align' in the objects table), {cfg.align_only_turn_deg} degree turns: "
                f"{sorted(refiner.align_only)}"
            )
        self._model_stages = (refiner.cfg.num_stages, refiner.cfg.shared_stages)
        problem = _stages_problem(cfg.stages, *self._model_stages)
        if problem:
            raise ParameterError("stages", problem)
        # Before the warm-up and the first frame: building a mesh's templates takes up to a minute.
        self._prepare_alignment(refiner, cfg, "start-up")
        if cfg.warmup:
            tic = time.perf_counter()
            _warm_up(refiner, cfg.stages or None, cfg.align)
            self.get_logger().info(
                f"warm-up: {(time.perf_counter() - tic) * 1000:.0f} ms on {self.device} "
                f"({refiner.renderer.describe()})"
            )
        return refiner

    def _prepare_alignment(self, refiner: Any, cfg: NodeConfig, when: str) -> None:
        """Loads (or builds and caches) the alignment templates of the objects that these parameters may
        align, and logs per object how long it took and whether the cache had them."""
        wanted = (
            refiner.object_ids if frame_jobs.needs_alignment(cfg) else sorted(refiner.align_only)
        )
        for object_id in wanted:
            if object_id in self._alignment_ready:
                continue
            tic = time.perf_counter()
            built = refiner.prepare_alignment([object_id])
            how = "built and cached" if built else "loaded from the cache"
            self.get_logger().info(
                f"alignment templates of {object_id!r} {how} in "
                f"{(time.perf_counter() - tic) * 1000:.0f} ms ({when})"
            )
            self._alignment_ready.add(object_id)

    def _process(self, refiner: Any, frame: _Frame) -> None:
        cfg = self.config
        self._prepare_alignment(refiner, cfg, "run-time change of align or tracking.method")
        header = frame.image.header
        stamp_s = header.stamp.sec + header.stamp.nanosec * 1e-9
        if frame.image_only:
            # Nothing was asked for this image: without live tracks it publishes nothing.
            jobs = []
            if cfg.tracking_enabled:
                jobs = frame_jobs.tracked_jobs(self._tracker, stamp_s, cfg)
            if not jobs:
                return
            self._stats.add("tracked_images")
        frame_error, rgb, K = self._decode(frame)
        if not frame.image_only:
            detections = conversions.parse_detections(
                frame.detections, refiner.object_ids, header.frame_id
            )
            detections = self._limit_detections(frame, detections, cfg.max_detections)
            if not detections and cfg.tracking_enabled:
                jobs = frame_jobs.tracked_jobs(self._tracker, stamp_s, cfg)
            else:
                jobs = self._detection_jobs(detections)
        # The steps are frame_jobs.py's, shared with the bag tool (refine_bag.py).
        frame_jobs.reject_frame(jobs, frame_error)
        results, compute_ms = frame_jobs.refine_jobs(refiner, rgb, K, jobs, cfg)
        published = self._publish(frame, jobs, results, cfg, frame_error is not None, compute_ms)
        # A broken frame says nothing about the objects: tracks stay as they are.
        if frame_error is None:
            frame_jobs.update_tracks(self._tracker, jobs, results, published, stamp_s, cfg)
        if rgb is not None and K is not None:
            self._maybe_overlay(refiner, frame, rgb, K, jobs, results, published, cfg)
        self._maybe_markers(frame, jobs, results, published)
        now = time.monotonic()
        self._stats.arrived("processed", now)
        self._stats.add("processed")
        if frame_error:
            self._stats.add("rejected_frames")

    def _decode(self, frame: _Frame) -> tuple[str | None, np.ndarray | None, np.ndarray | None]:
        """(error or None, rgb, K); warns about distortion and frame ids once or throttled."""
        image, info = frame.image, frame.info
        try:
            rgb = image_msg_to_rgb(image)  # Image, or CompressedImage (image_transport)
            intrinsics = conversions.camera_intrinsics(info, rgb.shape[1], rgb.shape[0])
        except ValueError as exc:
            self._warn(f"frame:{str(exc)[:40]}", f"frame {_stamp_text(image)} rejected: {exc}")
            return str(exc), None, None
        if intrinsics.distorted:
            self._warn_once(
                "distortion",
                f"camera_info.d is non-zero ({list(info.d)}): images are expected rectified; poses from "
                "a distorted image are biased towards its borders (use image_proc's rectify node)",
            )
        if intrinsics.size_unchecked:
            self._warn_once(
                "size", "camera_info.width and height are 0: the image size cannot be checked"
            )
        if image.header.frame_id != info.header.frame_id:
            self._warn(
                "frame_ids",
                f"image.header.frame_id {image.header.frame_id!r} differs from camera_info.header.frame_id "
                f"{info.header.frame_id!r}; outputs use the image's",
            )
        return None, rgb, intrinsics.K

    def _limit_detections(
        self, frame: _Frame, detections: list[CoarseDetection], max_count: int
    ) -> list[CoarseDetection]:
        """The max_detections highest-scored detections; warns (throttled) how many were dropped."""
        kept, dropped = conversions.limit_detections(detections, max_count)
        if dropped:
            self._stats.add("detections_over_max", dropped)
            self._warn(
                "max_detections",
                f"frame {_stamp_text(frame.image)} has {len(detections)} detections, more than "
                f"max_detections {max_count}: the {dropped} lowest-scored were dropped (neither refined "
                "nor reported); raise max_detections if they are needed",
            )
        return kept

    def _detection_jobs(self, detections: list[CoarseDetection]) -> list[_Job]:
        jobs, duplicates = frame_jobs.detection_jobs(detections)
        if duplicates:
            self._warn(
                "duplicate_ids",
                f"detections carry duplicate ids {duplicates}; each is refined, and further ones are named "
                f"<id>_1, <id>_2... in TF and refined/details: {[job.instance_id for job in jobs]}",
            )
        for job in jobs:
            if job.error:
                self._warn(f"det:{job.error[:40]}", f"detection not refined: {job.error}")
        return jobs

    def _publish(
        self,
        frame: _Frame,
        jobs: list[_Job],
        results: dict[int, Any],
        cfg: NodeConfig,
        frame_rejected: bool,
        compute_ms: float,
    ) -> list[bool]:
        header = frame.image.header
        out = frame_messages(self._msg_types, header, jobs, results, min_score=cfg.min_score,
                             tf_prefix=cfg.tf_prefix, boxes=self._boxes, compute_ms=compute_ms)  # fmt: skip
        for i, job in enumerate(jobs):
            key = out.failure_kind(i, results.get(i))
            if key is not None:
                self._stats.add(key)
                if results.get(i) is not None:
                    self._warn(f"res:{key}", f"{job.instance_id} not published: {out.errors[i]}")
        if not frame_rejected:
            self._pub_detections.publish(out.detections)
            for pose in out.poses:
                self._pub_pose.publish(pose)
            if cfg.publish_tf and out.transforms:
                if header.frame_id:
                    self._tf.sendTransform(out.transforms)
                else:
                    self._warn(
                        "tf_frame",
                        "image.header.frame_id is empty: no TF published (no parent frame)",
                    )
        latency_ms = (self.get_clock().now().nanoseconds - _stamp_ns(header)) / 1e6
        out.details.latency_ms = float(latency_ms)
        self._pub_details.publish(out.details)
        self._stats.frame_done(latency_ms, compute_ms)
        return out.published

    def _maybe_overlay(
        self,
        refiner: Any,
        frame: _Frame,
        rgb: np.ndarray,
        K: np.ndarray,
        jobs: list[_Job],
        results: dict[int, Any],
        published: list[bool],
        cfg: NodeConfig,
    ) -> None:
        if self._pub_overlay.get_subscription_count() == 0:
            return
        now = time.monotonic()
        if (
            cfg.overlay_max_rate_hz > 0
            and now - self._last_overlay < 1.0 / cfg.overlay_max_rate_hz
        ):
            return
        self._last_overlay = now
        from attn6d_ros.overlay import OverlayItem, draw_overlay, refinement_label

        items = []
        for i, job in enumerate(jobs):
            if job.class_id not in refiner.models:
                continue
            result = results.get(i)
            error, _ = frame_jobs.outcome(job, result, cfg.min_score)
            items.append(
                OverlayItem(
                    model=refiner.models[job.class_id],
                    label=refinement_label(
                        job.instance_id,
                        tracked=job.tracked,
                        method="" if result is None else result.method,
                        align_motion_m=None if result is None else result.align_motion_m,
                    ),
                    T_init=job.T_init,
                    T=result.T if published[i] else None,
                    score=None if result is None else float(result.score),
                    attention=None  # none without network stages (the alignment alone)
                    if result is None or result.attention is None or not len(result.attention)
                    else result.attention[-1],
                    window=None if result is None else result.window,
                    error=error,
                )
            )
        overlay = draw_overlay(rgb, K, items)
        self._pub_overlay.publish(conversions.rgb_to_image(overlay, frame.image.header))

    def _maybe_markers(
        self, frame: _Frame, jobs: list[_Job], results: dict[int, Any], published: list[bool]
    ) -> None:
        if self._pub_markers.get_subscription_count() == 0:
            return
        items = []
        for i, job in enumerate(jobs):
            if not published[i]:
                continue
            mesh, scale, diameter = self._marker_meshes[job.class_id]
            tracked = " (tracked)" if job.tracked else ""
            items.append(
                MarkerItem(
                    label=f"{job.instance_id} {results[i].score:.2f}{tracked}",
                    mesh=mesh,
                    scale=scale,
                    diameter_m=diameter,
                    T=results[i].T,
                    T_coarse=job.T_init,
                )
            )
        self._pub_markers.publish(marker_array(frame.image.header, items))

    # -- logging helpers ----------------------------------------------------------------------------

    def _warn(self, key: str, message: str, repeat_s: float = WARN_REPEAT_S) -> None:
        """A warning logged at most every `repeat_s` per `key` (rclpy throttles per call site only)."""
        now = time.monotonic()
        if now - self._warned.get(key, -1e9) >= repeat_s:
            if len(self._warned) > 500:
                self._warned.clear()
            self._warned[key] = now
            self.get_logger().warning(message)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned_once:
            self._warned_once.add(key)
            self.get_logger().warning(message)

    # -- shutdown -----------------------------------------------------------------------------------

    def _stop_worker(self) -> None:
        self._stopping.set()
        if hasattr(self, "_slot"):
            self._slot.close()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=10.0)

    def destroy_node(self) -> None:
        self._stop_worker()
        super().destroy_node()


def _fallbacks_text() -> str:
    """Which implementation of each optional ROS package is in use (docs/node.md, "Fallbacks")."""
    return (
        "synchronizer "
        + ("message_filters" if sync.USING_MESSAGE_FILTERS else "fallback (attn6d_ros.sync)")
        + ", TF broadcaster "
        + ("tf2_ros" if tf_publisher.USING_TF2_ROS else "fallback (attn6d_ros.tf_publisher)")
        + ", image conversion "
        + ("cv_bridge" if conversions.USING_CV_BRIDGE else "numpy (attn6d_ros.conversions)")
    )


# Fast DDS 3 (Kilted) reads the first, Fast DDS 2 (Humble, Jazzy) the second.
_PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def _dds_profile_hint() -> str:
    """Where the package's Fast DDS profile for large images is (docs/node.md, 'Large images')."""
    try:
        return str(share_dir() / "config" / "fastdds_large_frames.xml")
    except FileNotFoundError:
        return "config/fastdds_large_frames.xml of the attn6d_ros package"


def _dds_text() -> str:
    """The RMW and the Fast DDS profile in effect, for the start-up line."""
    rmw = (
        os.environ.get("RMW_IMPLEMENTATION") or rclpy.utilities.get_rmw_implementation_identifier()
    )
    profiles = [os.environ[v] for v in _PROFILE_VARIABLES if os.environ.get(v)]
    if "fastrtps" not in rmw:
        return f"RMW {rmw}"
    if profiles:
        return f"RMW {rmw}, Fast DDS profile {profiles[0]}"
    return (
        f"RMW {rmw}, no Fast DDS profile: best-effort images larger than 512 KiB from other processes "
        f"may be lost (use {_dds_profile_hint()}; docs/node.md, 'Large images')"
    )


def _qos(reliability: str, depth: int) -> QoSProfile:
    return QoSProfile(
        depth=depth,
        history=HistoryPolicy.KEEP_LAST,
        durability=DurabilityPolicy.VOLATILE,
        reliability=ReliabilityPolicy.RELIABLE
        if reliability == "reliable"
        else ReliabilityPolicy.BEST_EFFORT,
    )


def _stages_problem(stages: int, num_stages: int, shared: bool) -> str | None:
    if stages > num_stages and not shared:
        return (
            f"parameter 'stages' is {stages} but the checkpoint's model has {num_stages} stages without "
            f"weight sharing: use 0 (the model's own) to {num_stages}"
        )
    return None


def _stamp_ns(header: Any) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def _stamp_text(image: Image) -> str:
    return f"{image.header.stamp.sec}.{image.header.stamp.nanosec:09d}"


def _warm_up(refiner: Any, stages: int | None, align: bool) -> None:
    """One refinement of every object on a synthetic 640x480 frame: GL context, mesh uploads, kernels."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    K = np.array([[500.0, 0.0, 319.5], [0.0, 500.0, 239.5], [0.0, 0.0, 1.0]])
    detections = []
    for object_id in refiner.object_ids:
        T = np.eye(4)
        T[2, 3] = max(0.3, 3.0 * refiner.models[object_id].diameter)  # about a third of the image
        detections.append((object_id, T))
    refiner.refine(image, K, detections, stages=stages, align=align)


def main(args: list[str] | None = None) -> int:
    """Runs the node until Ctrl-C, SIGTERM or shutdown; returns 0 then (also after a second signal during the
    clean-up, shutdown.py), 1 when it cannot start (the log line says why)."""
    logger = rclpy.logging.get_logger(NODE_NAME)
    # A logger without the node's /rosout publisher: the context is shut down when a second signal comes.
    signals = ShutdownSignals(rclpy.logging.get_logger(f"{NODE_NAME}.shutdown").info)
    signals.install()  # before rclpy.init: rclpy's handlers call ours after shutting the context down
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = RefineNode()
        except (ParameterError, FileNotFoundError, StartupError) as exc:
            logger.fatal(f"cannot start: {exc}")
            return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        signals.cleaning_up = True
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
