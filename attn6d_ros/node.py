"""The ROS 2 refinement node `attn6d_refiner`: synchronized image, camera_info and coarse detections in;
refined poses, details, TF, an attention overlay, RViz markers and diagnostics out. docs/node.md is its
reference (topics, parameters, tracking, alignment, what is published when a detection is not refined).

One camera frame, start to end, all in this file:

1. executor thread: `_on_synced` gets (image, camera_info, detections) from the approximate-time synchronizer
   (sync.queue_size, sync.slop) and puts it into a latest-only slot (ros/backpressure.py; a frame replaced
   while the worker is busy counts as dropped). With tracking.wait_s > 0, `_on_image_pair` and
   `_flush_pending` send images whose detections did not come in time as image-only frames.
2. worker thread (it owns the Refiner: its OpenGL context stays on the thread that created it): `_process`
   plans the frame's jobs (ros/frame_jobs.py: from the detections, or from the tracks), decodes the image
   (ros/codec.py), refines and judges every job once and updates the tracks (frame_jobs.run_frame);
3. `_publish`: ros/codec.py builds refined/detections, refined/pose, TF and refined/details from the judged
   jobs; the overlay (ros/overlay.py) and markers (ros/markers.py) are drawn from the same jobs, only while
   someone subscribes. Every output carries the input image's header.

Start-up (ros/refiner_setup.py) checks parameters and files first, then loads the checkpoint and the object
table on the worker thread, prepares the alignment templates and warms up. The first SIGINT or SIGTERM stops
the node; later ones during the clean-up are only logged (ros/shutdown.py): exit code 0.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

try:
    from vision_msgs.msg import Detection3DArray
except ImportError as _exc:  # pragma: no cover - a broken installation
    raise ImportError("the node needs vision_msgs (apt: ros-$ROS_DISTRO-vision-msgs)") from _exc

from attn6d_ros.msg import RefinementArray
from attn6d_ros.ros import (
    codec,
    frame_jobs,
    inputs,
    markers,
    middleware,
    overlay,
    refiner_setup,
    tf_publisher,
)
from attn6d_ros.ros.backpressure import LatestSlot
from attn6d_ros.ros.diagnostics import NodeStats, diagnostic_status, missing_images
from attn6d_ros.ros.input_watch import InputWatch
from attn6d_ros.ros.params import (
    NODE_NAME,
    NodeConfig,
    ParameterError,
    declare_parameters,
    ignored_parameters,
)
from attn6d_ros.ros.refiner_setup import LoadedRefiner
from attn6d_ros.ros.shutdown import ShutdownSignals
from attn6d_ros.ros.throttled_log import ThrottledLog
from attn6d_ros.ros.tracking import PendingImages, Tracker

PENDING_CHECK_S = 0.01  # how often images waiting for detections are checked (tracking.wait_s)


class StartupError(RuntimeError):
    """The node cannot start (model, objects or device); the message says why."""


@dataclass
class _Frame:
    image: Image | CompressedImage
    info: CameraInfo
    detections: Detection3DArray | None  # None: no detections arrived in time (tracking.wait_s)


class RefineNode(Node):
    """Refines coarse 6D poses from a detector (module docstring). Parameters: ros/params.py, NodeConfig.

    Raises (from the constructor):
        ParameterError: a parameter value it cannot run with (names the parameter and the value).
        FileNotFoundError: a mesh of the object table is missing.
        StartupError: the model could not be loaded or warmed up on the requested device.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._stopping = threading.Event()
        self._slot: LatestSlot[_Frame] = LatestSlot()
        self._worker: threading.Thread | None = None
        try:
            self._setup()
        except BaseException:
            self._stop_worker()
            raise

    def _setup(self) -> None:
        log = self.get_logger()
        self.config: NodeConfig = declare_parameters(self)
        # rclpy keeps the values from YAML and -p in _parameter_overrides, without an accessor.
        for warning in ignored_parameters(getattr(self, "_parameter_overrides", {})):
            log.warning(warning)
        cfg = self.config
        checkpoint, specs = refiner_setup.check_inputs(cfg)
        self._log = ThrottledLog(log.warning)
        self._stats = NodeStats()
        self._tracker = Tracker()
        self._watch = InputWatch()
        self._sync_problem = self._image_problem = ""
        self._dds_hint = middleware.dds_profile_hint()  # named by the missing-images warning
        self._last_overlay = 0.0
        self._msg_types = codec.rclpy_types()
        self._templates = refiner_setup.AlignmentTemplates(log.info)
        # (image, camera_info) pairs waiting for their detections (tracking.wait_s).
        self._pending: PendingImages[tuple[Image, CameraInfo]] = PendingImages(cfg.sync_queue_size)

        # Outputs first: the worker publishes as soon as frames come.
        self._pub_detections = self.create_publisher(Detection3DArray, "refined/detections", 10)
        self._pub_pose = self.create_publisher(PoseStamped, "refined/pose", 10)
        self._pub_details = self.create_publisher(RefinementArray, "refined/details", 10)
        self._pub_overlay = self.create_publisher(Image, "debug/attention_overlay", 2)
        self._pub_markers = self.create_publisher(MarkerArray, "debug/markers", 2)
        self._pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._tf = tf_publisher.TransformBroadcaster(self)

        # The worker loads the Refiner on its own thread (its OpenGL context lives there).
        loading: Future[LoadedRefiner] = Future()
        self._worker = threading.Thread(
            target=self._run_worker, args=(checkpoint, specs, loading), name="attn6d_inference",
            daemon=True,
        )  # fmt: skip
        self._worker.start()
        try:
            self._loaded = loading.result()
        except (ParameterError, FileNotFoundError):  # a device, stages, a mesh file
            raise
        except BaseException as exc:
            raise StartupError(f"cannot load the refiner: {exc}") from exc

        self.add_on_set_parameters_callback(self._check_stages)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._subscribed = inputs.subscribe_inputs(
            self, cfg, self._on_input, self._on_synced, self._on_image_pair
        )
        self._inputs = self._subscribed.subscribers
        self.create_service(Trigger, "~/reset_tracking", self._reset_tracking)
        self.create_timer(cfg.diagnostics_period_s, self._publish_diagnostics)
        self.create_timer(0.5, self._check_inputs)
        # Runs only while images wait for their detections (started by _on_image_pair).
        self._pending_timer = self.create_timer(PENDING_CHECK_S, self._flush_pending)
        self._pending_timer.cancel()
        log.info(
            f"ready: device {self._loaded.device}, checkpoint {checkpoint}, objects {sorted(specs)}; "
            f"{middleware.fallbacks_text()}; {middleware.dds_text()}"
        )
        log.info(f"parameters: {cfg.as_parameters()}")

    # -- executor thread: inputs, parameters, service, timers ---------------------------------------

    def _on_input(self, kind: str, msg: Any) -> None:
        now = time.monotonic()
        self._stats.arrived(kind, now)
        self._watch.arrived(kind, codec.stamp_text(msg.header), now)

    def _on_synced(self, image: Image, info: CameraInfo, detections: Detection3DArray) -> None:
        now = time.monotonic()
        self._watch.synced(now)
        self._stats.arrived("synced", now)
        self._stats.add("synced")
        stamp_ns = codec.stamp_ns(image.header)
        arrived = self._pending.synced(stamp_ns)
        if arrived is not None:
            self._stats.add("late_detections")
            self._log.warn(
                "late_detections",
                f"detections for image {codec.stamp_text(image.header)} arrived {now - arrived:.3f} s "
                "after the image, which was already refined from the tracks (tracking.wait_s "
                f"{self.config.tracking_wait_s}); they are ignored: set tracking.wait_s above the "
                "detector's latency",
            )
            return
        self._slot.put(_Frame(image, info, detections), priority=1)

    def _on_image_pair(self, image: Image, info: CameraInfo) -> None:
        cfg = self.config
        if not (cfg.tracking_enabled and cfg.tracking_wait_s > 0):
            return
        kept = self._pending.add(codec.stamp_ns(image.header), (image, info), time.monotonic())
        if kept and self._pending_timer.is_canceled():
            self._pending_timer.reset()

    def _flush_pending(self) -> None:
        """Sends images whose detections are later than tracking.wait_s to the worker as image-only frames;
        in the slot a frame with detections is never replaced by one of these."""
        if not self._pending:
            self._pending_timer.cancel()
            return
        cfg, now = self.config, time.monotonic()
        active = cfg.tracking_enabled and cfg.tracking_wait_s > 0  # both can change at run time
        wait_s = cfg.tracking_wait_s if active else 0.0
        for _, (image, info), _ in self._pending.release(
            now, wait_s, active and len(self._tracker) > 0
        ):
            self._stats.arrived("synced", now)
            self._slot.put(_Frame(image, info, None), priority=0)

    def _check_stages(self, parameters: list[Parameter]) -> SetParametersResult:
        cfg = self._loaded.refiner.cfg
        for parameter in parameters:
            if parameter.name == "stages":
                reason = refiner_setup.stages_problem(
                    parameter.value, cfg.num_stages, cfg.shared_stages
                )
                if reason:
                    return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        ours = {p.name: p.value for p in parameters if p.name in self.config.as_parameters()}
        if ours:
            self.config = self.config.with_parameters(ours)
            self.get_logger().info(f"parameters changed: {ours}")

    def _reset_tracking(self, request: Trigger.Request, response: Trigger.Response) -> Any:
        response.success = True
        response.message = f"cleared {self._tracker.reset()} track(s)"
        self.get_logger().info(f"reset_tracking: {response.message}")
        return response

    def _check_inputs(self) -> None:
        """Warns when camera_info arrives without images, and when images and detections both arrive but
        never synchronize (ros/input_watch.py), naming the stamps seen."""
        now = time.monotonic()
        self._image_problem = missing_images(self._stats, now, self._dds_hint)
        if self._image_problem:
            self._log.warn("missing_images", self._image_problem)
        cfg = self.config
        self._sync_problem = self._watch.sync_problem(now, cfg.sync_warn_after_s, cfg.sync_slop)
        if self._sync_problem:
            self._log.warn("sync", self._sync_problem, repeat_s=cfg.sync_warn_after_s)

    def _publish_diagnostics(self) -> None:
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [
            diagnostic_status(
                self._stats,
                name=f"{self.get_fully_qualified_name()}: pose refinement",
                device=self._loaded.device,
                worker_alive=self._worker is not None and self._worker.is_alive(),
                sync_problem=self._sync_problem,
                image_problem=self._image_problem,
                dropped=self._slot.dropped,
                tracks=len(self._tracker),
            )
        ]
        self._pub_diagnostics.publish(array)

    # -- worker thread ------------------------------------------------------------------------------

    def _run_worker(self, checkpoint: Path, specs: dict, loading: Future) -> None:
        try:
            setup = refiner_setup.start_refiner(
                self.config, checkpoint, specs, self._templates, self.get_logger().info
            )
        # Any failure must reach __init__, which exits non-zero with it.
        except BaseException as exc:
            loading.set_exception(exc)
            return
        loading.set_result(setup)
        log = self.get_logger()
        try:
            while not self._stopping.is_set():
                frame = self._slot.take(timeout=0.5)
                if frame is None:
                    continue
                try:
                    self._process(setup, frame)
                except Exception:  # keep serving frames; the failure is logged and counted
                    if self._stopping.is_set():  # publishers already gone while shutting down
                        log.debug(f"frame dropped at shutdown:\n{traceback.format_exc()}")
                        break
                    self._stats.add("internal_errors")
                    log.error(f"internal error on a frame:\n{traceback.format_exc()}")
        finally:
            setup.refiner.renderer.close()

    def _process(self, setup: LoadedRefiner, frame: _Frame) -> None:
        cfg, refiner = self.config, setup.refiner
        self._templates.prepare(refiner, cfg, "run-time change of align or tracking.method")
        header = frame.image.header
        stamp_s = codec.stamp_seconds(header)
        plan = frame_jobs.plan_frame(frame.detections, header, refiner, self._tracker, cfg)
        if frame.detections is None:
            if not plan.jobs:  # nothing was asked for this image and no track is live
                return
            self._stats.add("tracked_images")
        self._stats.add("detections_over_max", plan.dropped)
        for key, message in frame_jobs.plan_warnings(
            plan, codec.stamp_text(header), cfg.max_detections
        ):
            self._log.warn(key, message)
        decoded = codec.decode_frame(frame.image, frame.info)
        for key, message, once in decoded.warnings:
            (self._log.warn_once if once else self._log.warn)(key, message)
        compute_ms = frame_jobs.run_frame(
            refiner, self._tracker, plan.jobs, decoded.error, decoded.rgb, decoded.K, stamp_s, cfg
        )
        self._publish(setup, header, plan.jobs, compute_ms, frame_ok=decoded.error is None)
        if decoded.rgb is not None and self._pub_overlay.get_subscription_count() > 0:
            now = time.monotonic()
            rate = cfg.overlay_max_rate_hz
            if rate <= 0 or now - self._last_overlay >= 1.0 / rate:
                self._last_overlay = now
                items = overlay.job_items(plan.jobs, refiner.models)
                image = overlay.draw_overlay(decoded.rgb, decoded.K, items)
                self._pub_overlay.publish(codec.rgb_to_image(image, header))
        if self._pub_markers.get_subscription_count() > 0:
            items = markers.job_items(plan.jobs, setup.marker_meshes)
            self._pub_markers.publish(markers.marker_array(header, items))
        self._stats.arrived("processed", time.monotonic())
        self._stats.add("processed")
        if decoded.error:
            self._stats.add("rejected_frames")

    def _publish(
        self,
        setup: LoadedRefiner,
        header: Any,
        jobs: list[frame_jobs.Job],
        compute_ms: float,
        frame_ok: bool,
    ) -> None:
        cfg = self.config
        out = codec.frame_messages(self._msg_types, header, jobs, tf_prefix=cfg.tf_prefix,
                                   boxes=setup.boxes, compute_ms=compute_ms)  # fmt: skip
        for job in jobs:
            if job.failure_kind is not None:
                self._stats.add(job.failure_kind)
                if job.result is not None:
                    self._log.warn(
                        f"res:{job.failure_kind}",
                        f"{job.instance_id} not published: {job.reported_error}",
                    )
        if frame_ok:
            self._pub_detections.publish(out.detections)
            for pose in out.poses:
                self._pub_pose.publish(pose)
            if cfg.publish_tf and out.transforms:
                if header.frame_id:
                    self._tf.sendTransform(out.transforms)
                else:
                    self._log.warn(
                        "tf_frame",
                        "image.header.frame_id is empty: no TF published (no parent frame)",
                    )
        latency_ms = (self.get_clock().now().nanoseconds - codec.stamp_ns(header)) / 1e6
        out.details.latency_ms = float(latency_ms)
        self._pub_details.publish(out.details)
        self._stats.frame_done(latency_ms, compute_ms)

    # -- shutdown -----------------------------------------------------------------------------------

    def _stop_worker(self) -> None:
        self._stopping.set()
        self._slot.close()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=10.0)

    def destroy_node(self) -> None:
        self._stop_worker()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Runs the node until Ctrl-C, SIGTERM or shutdown; returns 0 then (also after a second signal during the
    clean-up, ros/shutdown.py), 1 when it cannot start (the log line says why)."""
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
