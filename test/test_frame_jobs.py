"""A frame's jobs without ROS (ros/frame_jobs.py): planned from detections or tracks, refined in one batch,
judged once, the tracks updated; the messages, overlay and markers all read that one verdict."""

from types import SimpleNamespace

import numpy as np

from attn6d_ros.align import AlignConfig
from attn6d_ros.pose_check import AgreementConfig
from attn6d_ros.ros import frame_jobs
from attn6d_ros.ros.params import NodeConfig
from attn6d_ros.ros.tracking import Track, Tracker

K = np.array([[550.0, 0.0, 319.5], [0.0, 550.0, 239.5], [0.0, 0.0, 1.0]])
FRAME = "camera_optical"


def _header(t: float = 10.0) -> SimpleNamespace:
    stamp = SimpleNamespace(sec=int(t), nanosec=round((t - int(t)) * 1e9))
    return SimpleNamespace(stamp=stamp, frame_id=FRAME)


def _detections(items: list[tuple[str, str, float]], z: float = 0.6) -> SimpleNamespace:
    """A Detection3DArray look-alike: (detection id, class id, detector score) each, pose at depth z."""
    detections = []
    for detection_id, class_id, score in items:
        pose = SimpleNamespace(
            position=SimpleNamespace(x=0.0, y=0.0, z=z),
            orientation=SimpleNamespace(x=0.0, y=0.0, z=0.0, w=1.0),
        )
        hypothesis = SimpleNamespace(class_id=class_id, score=score)
        result = SimpleNamespace(hypothesis=hypothesis, pose=SimpleNamespace(pose=pose))
        detections.append(SimpleNamespace(id=detection_id, header=_header(), results=[result]))
    return SimpleNamespace(header=_header(), detections=detections)


class _Refiner:
    """Stands in for the Refiner: one result per detection, with the score given per class id."""

    object_ids = ("mug", "box")

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores
        self.align_config = AlignConfig()
        self.align_only_config = AlignConfig(start_turn_deg=15.0)
        self.agreement_config = AgreementConfig()

    def refine(self, rgb, K, detections, **kwargs):
        return [
            SimpleNamespace(
                T=T + 0.0, score=self.scores[c], error=None, guard=None, align_error=None,
                ok=True, elapsed_ms=2.0,
            )
            for c, T in detections
        ]  # fmt: skip


def test_a_plan_keeps_the_highest_scored_detections_and_names_duplicates() -> None:
    cfg = NodeConfig(max_detections=2)
    msg = _detections([("a", "mug", 0.3), ("a", "mug", 0.9), ("c", "box", 0.8)])
    plan = frame_jobs.plan_frame(msg, _header(), _Refiner({}), Tracker(), cfg)
    assert [job.source for job in plan.jobs] == ["detections[1]", "detections[2]"]
    assert (plan.dropped, plan.detections_count, plan.duplicates) == (1, 3, [])
    keys = [key for key, _ in frame_jobs.plan_warnings(plan, "10.000000000", 2)]
    assert keys == ["max_detections"]
    plan = frame_jobs.plan_frame(msg, _header(), _Refiner({}), Tracker(), NodeConfig())
    assert plan.duplicates == ["a"] and [j.instance_id for j in plan.jobs] == ["a", "a_1", "c"]
    unknown = frame_jobs.plan_frame(_detections([("x", "cup", 0.5)]), _header(), _Refiner({}),
                                    Tracker(), NodeConfig())  # fmt: skip
    ((key, message),) = frame_jobs.plan_warnings(unknown, "10.000000000", 16)
    assert key.startswith("det:") and "'cup' is not in the object table" in message


def test_a_frame_without_detections_is_planned_from_the_tracks_only_with_tracking() -> None:
    tracker = Tracker()
    tracker.replace([Track("mug", "", "mug", np.eye(4), 0.9, 9.9)], 0.0)
    off = frame_jobs.plan_frame(None, _header(), _Refiner({}), tracker, NodeConfig())
    assert off.jobs == []
    on = NodeConfig(tracking_enabled=True, tracking_min_score=0.0)
    for msg in (None, _detections([])):  # image-only, and an empty detections message
        (job,) = frame_jobs.plan_frame(msg, _header(), _Refiner({}), tracker, on).jobs
        assert job.tracked and job.source == "track 'mug'"


def test_every_job_is_judged_once_and_the_published_ones_become_tracks() -> None:
    cfg = NodeConfig(tracking_enabled=True, tracking_min_score=0.0, min_score=0.5)
    refiner, tracker = _Refiner({"mug": 0.9, "box": 0.1}), Tracker()
    msg = _detections([("m", "mug", 0.9), ("b", "box", 0.9), ("u", "cup", 0.9)])
    plan = frame_jobs.plan_frame(msg, _header(), refiner, tracker, cfg)
    rgb = np.zeros((480, 640, 3), np.uint8)
    compute_ms = frame_jobs.run_frame(refiner, tracker, plan.jobs, None, rgb, K, 10.0, cfg)
    mug, box, cup = plan.jobs
    assert compute_ms == 2.0
    assert mug.published and mug.reported_error is None and mug.failure_kind is None
    assert not box.published and "below min_score 0.5" in box.reported_error
    assert box.failure_kind == "below_min_score"
    assert cup.result is None and cup.failure_kind == "failed_detections"
    assert [t.instance_id for t in tracker.priors(10.0, 1.0, 0.0)] == ["m"]


def test_a_rejected_frame_fails_every_job_and_leaves_the_tracks() -> None:
    cfg = NodeConfig(tracking_enabled=True, tracking_min_score=0.0)
    tracker = Tracker()
    tracker.replace([Track("old", "", "mug", np.eye(4), 0.9, 9.9)], 0.0)
    refiner = _Refiner({"mug": 0.9})
    plan = frame_jobs.plan_frame(
        _detections([("m", "mug", 0.9)]), _header(), refiner, tracker, cfg
    )
    frame_jobs.run_frame(refiner, tracker, plan.jobs, "image.encoding 'yuv' is not supported",
                         None, None, 10.0, cfg)  # fmt: skip
    (job,) = plan.jobs
    assert not job.published and job.reported_error.startswith("frame rejected: image.encoding")
    assert [t.instance_id for t in tracker.priors(10.0, 1.0, 0.0)] == ["old"]
