"""One frame's refinement jobs, free of ROS: detections or tracks in, Refiner calls and outcomes out.

The refinement node (node.py) and the bag tool (refine_bag.py) run every frame through these functions, in
the same order, so both refine the same objects from the same poses with the same settings and report the
same outcome:

1. `plan_frame`: the frame's jobs, one per object, from its detections (at most max_detections, named for TF
   and refined/details by `codec.instance_names`: `detection_jobs`) or, for a frame without detections and
   with tracking.enabled, from the live tracks (`tracked_jobs`);
2. `run_frame`: a frame whose image or camera_info cannot be used marks every job failed (`reject_frame`);
   the others are refined in one `Refiner.refine` batch (`refine_jobs`; a tracked frame with tracking.method
   align by the alignment alone from the tracks' poses: one start, no network); each job is judged once
   (`outcome`: the error refined/details reports, and whether the refined pose is published; a tracked pose
   whose alignment failed is not), and the published results become the tracks (`update_tracks`).

After `run_frame` every job carries its `result`, `reported_error` and `published`: the messages
(codec.frame_messages), the overlay and the markers all read that one verdict.

Poses follow geometry.py: 4x4 float64 ``T_cam_obj``, metres. Parameters come from params.NodeConfig.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from attn6d_ros.ros.codec import (
    CoarseDetection,
    instance_names,
    limit_detections,
    parse_detections,
    stamp_seconds,
)
from attn6d_ros.ros.params import NodeConfig
from attn6d_ros.ros.tracking import Track, Tracker

if TYPE_CHECKING:
    from attn6d_ros.refiner import RefinementResult, Refiner

# The Refiner numbers detections within its own call ("detection 2 ('mug'): ..."); outcomes name the input.
_REFINER_PREFIX = re.compile(r"^detection \d+ \('[^']*'\): ")


@dataclass
class Job:
    """One object to refine in a frame (from a detection or a track).

    Attributes:
        instance_id: the name its outputs carry (TF child without prefix, Refinement.instance_id).
        detection_id: Detection3D.id to publish ('' when the detector set none).
        class_id: the object table id.
        initial_pose: geometry_msgs/Pose as received; None for a track (built from `T_init`) or a detection
            without results.
        T_init: (4, 4) float64 coarse pose, camera optical frame, metres; None when `error` is set.
        error: why it is not refined, naming the field and the value; None when it can be.
        source: where it came from, for messages: "detections[3]" or "track 'mug'".
        result: the Refiner's result (`run_frame`); None when the job was not refined.
        reported_error: the error refined/details reports (`outcome`); None when there is none.
        published: whether the refined pose is published (`outcome`).
    """

    instance_id: str
    detection_id: str
    class_id: str
    initial_pose: Any
    T_init: np.ndarray | None
    error: str | None
    source: str
    result: RefinementResult | None = None
    reported_error: str | None = None
    published: bool = False

    @property
    def tracked(self) -> bool:
        """Refined from a track (the last refined pose), not from a detection."""
        return self.source.startswith("track")

    @property
    def failure_kind(self) -> str | None:
        """'below_min_score' or 'failed_detections' for a job reported with an error (diagnostics keys);
        None for a published one or one without an error."""
        if self.published or not self.reported_error:
            return None
        return (
            "below_min_score"
            if self.result is not None and self.result.ok
            else "failed_detections"
        )


@dataclass
class FramePlan:
    """A frame's jobs before refinement (`plan_frame`).

    Attributes:
        jobs: one per object to refine or to report.
        duplicates: detection ids used by more than one detection (each refined; the node warns).
        dropped: detections over max_detections, lowest-scored first (neither refined nor reported).
        detections_count: detections in the message (0 for an image-only frame).
    """

    jobs: list[Job]
    duplicates: list[str]
    dropped: int
    detections_count: int


def plan_frame(
    detections_msg: Any | None,
    image_header: Any,
    refiner: Refiner,
    tracker: Tracker,
    cfg: NodeConfig,
) -> FramePlan:
    """A frame's jobs: from its vision_msgs/Detection3DArray (codec.parse_detections against the refiner's
    objects and the image's frame; at most max_detections, the highest-scored), or from the live tracks
    when it has none (None: an image-only frame) and tracking.enabled."""
    detections = []
    if detections_msg is not None:
        detections = parse_detections(detections_msg, refiner.object_ids, image_header.frame_id)
    if detections:
        kept, dropped = limit_detections(detections, cfg.max_detections)
        jobs, duplicates = detection_jobs(kept)
        return FramePlan(jobs, duplicates, dropped, len(detections))
    stamp_s = stamp_seconds(image_header)
    jobs = tracked_jobs(tracker, stamp_s, cfg) if cfg.tracking_enabled else []
    return FramePlan(jobs, [], 0, 0)


def plan_warnings(plan: FramePlan, stamp_text: str, max_detections: int) -> list[tuple[str, str]]:
    """(key, message) warnings about a planned frame stamped `stamp_text`: detections over max_detections,
    duplicate detection ids, detections that cannot be refined (each naming the field and the value)."""
    warnings = []
    if plan.dropped:
        warnings.append((
            "max_detections",
            f"frame {stamp_text} has {plan.detections_count} detections, more than max_detections "
            f"{max_detections}: the {plan.dropped} lowest-scored were dropped (neither refined nor "
            "reported); raise max_detections if they are needed",
        ))  # fmt: skip
    if plan.duplicates:
        warnings.append((
            "duplicate_ids",
            f"detections carry duplicate ids {plan.duplicates}; each is refined, and further ones are named "
            f"<id>_1, <id>_2... in TF and refined/details: {[job.instance_id for job in plan.jobs]}",
        ))  # fmt: skip
    for job in plan.jobs:
        if job.error:
            warnings.append((f"det:{job.error[:40]}", f"detection not refined: {job.error}"))
    return warnings


def run_frame(
    refiner: Refiner,
    tracker: Tracker,
    jobs: list[Job],
    frame_error: str | None,
    rgb_u8: np.ndarray | None,
    K: np.ndarray | None,
    stamp_s: float,
    cfg: NodeConfig,
) -> float:
    """Refines and judges a frame's jobs and updates the tracks (module docstring, step 2).

    Args:
        frame_error: why the image or camera_info cannot be used (codec.decode_frame); None when they can.
        rgb_u8, K: the decoded image and its intrinsics (None with `frame_error`).
        stamp_s: the image's stamp, seconds.

    Returns:
        Milliseconds the Refiner spent on the frame.
    """
    reject_frame(jobs, frame_error)
    compute_ms = refine_jobs(refiner, rgb_u8, K, jobs, cfg)
    for job in jobs:
        job.reported_error, job.published = outcome(job, job.result, cfg.min_score)
    # A broken frame says nothing about the objects: tracks stay as they are.
    if frame_error is None:
        update_tracks(tracker, jobs, stamp_s, cfg)
    return compute_ms


def detection_jobs(detections: list[CoarseDetection]) -> tuple[list[Job], list[str]]:
    """One job per parsed detection (codec.parse_detections), bad ones with their error.

    Returns:
        (jobs, duplicate detection ids): ids used by more than one detection are refined each, further ones
        named <id>_1, <id>_2...; the node warns about them.
    """
    bases = [d.detection_id or d.class_id or f"detection_{d.index}" for d in detections]
    names, _ = instance_names(bases)
    ids = [d.detection_id for d in detections if d.detection_id]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    jobs = [
        Job(
            name,
            d.detection_id,
            d.class_id,
            d.pose,
            d.T_init,
            d.error,
            f"detections[{d.index}]",
        )
        for d, name in zip(detections, names, strict=True)
    ]
    return jobs, duplicates


def tracked_jobs(tracker: Tracker, stamp_s: float, cfg: NodeConfig) -> list[Job]:
    """Jobs from the live tracks usable at image time `stamp_s` (seconds): tracking.max_age_s, min_score."""
    tracks = tracker.priors(stamp_s, cfg.tracking_max_age_s, cfg.tracking_min_score)
    return [
        Job(t.instance_id, t.detection_id, t.class_id, None, t.T.copy(), None,
            f"track {t.instance_id!r}")
        for t in tracks
    ]  # fmt: skip


def reject_frame(jobs: list[Job], frame_error: str | None) -> None:
    """Marks every job of a frame whose image or camera_info is unusable (`frame_error`) as failed."""
    if not frame_error:
        return
    for job in jobs:
        own = f"; {job.error}" if job.error else ""
        job.error = f"frame rejected: {frame_error}{own}"


def apply_align_settings(refiner: Refiner, cfg: NodeConfig) -> None:
    """Sets the Refiner's alignment starts (align_turn_deg, align_only_turn_deg) and the guard's limit on
    aligned outlines (guard_max_align_energy) from the parameters; its other settings (templates) stay."""
    if refiner.agreement_config.max_align_energy != cfg.guard_max_align_energy:
        refiner.agreement_config = replace(
            refiner.agreement_config, max_align_energy=cfg.guard_max_align_energy
        )
    if refiner.align_config.start_turn_deg != cfg.align_turn_deg:
        refiner.align_config = replace(refiner.align_config, start_turn_deg=cfg.align_turn_deg)
    if refiner.align_only_config.start_turn_deg != cfg.align_only_turn_deg:
        refiner.align_only_config = replace(
            refiner.align_only_config, start_turn_deg=cfg.align_only_turn_deg
        )


def tracks_by_alignment(jobs: list[Job], cfg: NodeConfig) -> bool:
    """Whether this frame is refined by the alignment alone: its jobs come from tracks and
    tracking.method is align."""
    return cfg.tracking_method == "align" and any(job.tracked for job in jobs)


def needs_alignment(cfg: NodeConfig) -> bool:
    """Whether frames may be aligned with these parameters (align, or tracking by alignment); objects
    without trained weights always are."""
    return cfg.align or (cfg.tracking_enabled and cfg.tracking_method == "align")


def refine_jobs(
    refiner: Refiner,
    rgb_u8: np.ndarray | None,
    K: np.ndarray | None,
    jobs: list[Job],
    cfg: NodeConfig,
) -> float:
    """Refines every job without an error in one `Refiner.refine` batch (stages, align, guard from `cfg`) and
    sets its `result`.
    A tracked frame with tracking.method align is refined by the alignment alone (stages=0, align, one
    start from each track's pose; the guard as configured).

    Args:
        refiner: the Refiner (called on the thread that created it).
        rgb_u8: (H, W, 3) uint8 image; K: (3, 3) float64 intrinsics of that image. May be None only when
            every job already has an error.

    Returns:
        Milliseconds the Refiner spent. A ValueError of the Refiner about the frame as a whole marks the jobs
        failed ("frame rejected: ...") instead.
    """
    refinable = [job for job in jobs if job.error is None]
    if not refinable:
        return 0.0
    apply_align_settings(refiner, cfg)
    settings: dict[str, Any] = dict(stages=cfg.stages or None, align=cfg.align)
    if tracks_by_alignment(refinable, cfg):
        # From the last frame's pose the object moved little: one start, every object (also those without
        # trained weights), no network.
        one_start = replace(refiner.align_config, start_turn_deg=0.0)
        settings = dict(stages=0, align=True, align_config=one_start)
    try:
        out = refiner.refine(
            rgb_u8,
            K,
            [(job.class_id, job.T_init) for job in refinable],
            guard=cfg.guard,
            **settings,
        )
    except ValueError as exc:
        # The image or K as a whole (already checked by the caller), or stages.
        for job in refinable:
            job.error = f"frame rejected: {exc}"
        return 0.0
    for job, result in zip(refinable, out, strict=True):
        job.result = result
    return float(out[0].elapsed_ms)


def outcome(
    job: Job, result: RefinementResult | None, min_score: float
) -> tuple[str | None, bool]:
    """(error for refined/details or None, whether the refined pose is published) of one job."""
    if job.error is not None:
        return job.error, False
    if result is None:
        return None, False
    if result.error is not None:
        reason = _REFINER_PREFIX.sub("", result.error)
        return f"{job.source} ({job.class_id!r}): {reason}", False
    if result.score < min_score:
        return (
            f"score {result.score:.3f} is below min_score {min_score}: not published as refined",
            False,
        )
    if result.guard is not None:  # set only with the guard parameter on
        return f"{result.guard}: not published as refined", False
    if job.tracked and result.align_error is not None:
        return (
            f"{job.source} ({job.class_id!r}): alignment failed: {result.align_error}: not "
            "published as refined",
            False,
        )
    return None, True


def update_tracks(tracker: Tracker, jobs: list[Job], stamp_s: float, cfg: NodeConfig) -> None:
    """After a frame: its published results become the tracks (tracking.enabled). A frame with detections
    replaces every track; a tracked frame refreshes the tracks it refined and drops those that failed."""
    if not cfg.tracking_enabled:
        return
    good = [
        Track(job.instance_id, job.detection_id, job.class_id, job.result.T.copy(),
              job.result.score, stamp_s)
        for job in jobs
        if job.published and job.result is not None
    ]  # fmt: skip
    if any(job.tracked for job in jobs):
        lost = [job.instance_id for job in jobs if not job.published]
        tracker.update(good, lost, cfg.tracking_min_score)
    elif jobs:
        tracker.replace(good, cfg.tracking_min_score)
