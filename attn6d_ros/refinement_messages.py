"""The refinement outputs of one frame as messages, built by one function for rclpy's classes or rosbags'.

`frame_messages` turns a frame's jobs and results (frame_jobs.py) into refined/details
(attn6d_ros/RefinementArray), refined/detections (vision_msgs/Detection3DArray), one refined/pose
(geometry_msgs/PoseStamped) per published object and the TF transforms, every one carrying the image's
header. The node publishes them (with rclpy's classes, `MessageTypes.from_rclpy()`); the bag tool writes them
(with the classes of a rosbags typestore, `MessageTypes.from_typestore`). Every message is constructed with
all of its fields as keywords, which both kinds of class accept, so the two produce the same values.

Poses follow geometry.py: 4x4 float64 ``T_cam_obj``, metres; quaternions are filled by field name (x, y, z, w)
with w >= 0, as conversions.matrix_to_pose does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from attn6d_ros.frame_jobs import Job, outcome
from attn6d_ros.geometry import matrix_to_quat_xyzw

# ROS type name -> attribute of MessageTypes.
TYPE_NAMES: dict[str, str] = {
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
    """The message classes the outputs are built from, as attributes named like `TYPE_NAMES`' keys."""

    def __init__(self, classes: dict[str, type]) -> None:
        missing = sorted(set(TYPE_NAMES) - set(classes))
        if missing:
            raise ValueError(f"MessageTypes needs classes for {[TYPE_NAMES[m] for m in missing]}")
        for name, cls in classes.items():
            setattr(self, name, cls)

    @classmethod
    def from_rclpy(cls) -> MessageTypes:
        """rclpy's generated classes (imports the ROS packages)."""
        import importlib

        classes = {}
        for name, full in TYPE_NAMES.items():
            package, _, type_name = full.split("/")
            classes[name] = getattr(importlib.import_module(f"{package}.msg"), type_name)
        return cls(classes)

    @classmethod
    def from_typestore(cls, typestore: Any) -> MessageTypes:
        """The classes of a rosbags typestore in which all of `TYPE_NAMES` are registered."""
        missing = sorted(full for full in TYPE_NAMES.values() if full not in typestore.types)
        if missing:
            raise ValueError(f"the typestore has no definition of {missing}")
        return cls({name: typestore.types[full] for name, full in TYPE_NAMES.items()})


@dataclass
class FrameMessages:
    """A frame's outputs (see module docstring).

    Attributes:
        details: RefinementArray with every job (latency_ms 0: the caller sets it).
        detections: Detection3DArray with the published objects only.
        poses: one PoseStamped per published object.
        transforms: one TransformStamped per published object (child = tf_prefix + instance id).
        published: per job, whether its refined pose is published.
        errors: per job, the error refined/details reports ('' when none).
    """

    details: Any
    detections: Any
    poses: list[Any]
    transforms: list[Any]
    published: list[bool]
    errors: list[str]

    def failure_kind(self, index: int, result: Any) -> str | None:
        """'below_min_score', 'failed_detections' or None (published) for job `index` (diagnostics keys)."""
        if self.published[index] or not self.errors[index]:
            return None
        return "below_min_score" if result is not None and result.ok else "failed_detections"


def object_box(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """(centre, extent) of a mesh's axis-aligned box in its own frame, metres: refined/detections' bbox."""
    bounds = model.bounds
    return (bounds[0] + bounds[1]) / 2.0, bounds[1] - bounds[0]


def pose_msg(types: MessageTypes, T: np.ndarray) -> Any:
    """4x4 T -> geometry_msgs/Pose (unit quaternion with w >= 0)."""
    return types.Pose(position=_point(types.Point, T), orientation=_quaternion(types, T))


def transform_msg(types: MessageTypes, T: np.ndarray) -> Any:
    """4x4 T -> geometry_msgs/Transform."""
    return types.Transform(translation=_point(types.Vector3, T), rotation=_quaternion(types, T))


def _point(cls: type, T: np.ndarray) -> Any:
    x, y, z = (float(v) for v in T[:3, 3])
    return cls(x=x, y=y, z=z)


def _quaternion(types: MessageTypes, T: np.ndarray) -> Any:
    x, y, z, w = (float(v) for v in matrix_to_quat_xyzw(T[:3, :3]))
    return types.Quaternion(x=x, y=y, z=z, w=w)  # by field name: the order is x, y, z, w


def frame_messages(
    types: MessageTypes,
    header: Any,
    jobs: list[Job],
    results: dict[int, Any],
    *,
    min_score: float,
    tf_prefix: str,
    boxes: dict[str, tuple[np.ndarray, np.ndarray]],
    compute_ms: float,
) -> FrameMessages:
    """Builds a frame's outputs, each stamped with `header` (the image's).

    Args:
        types: the message classes to build with.
        header: the image's std_msgs/Header (of the same kind of class as `types`).
        jobs, results: frame_jobs.detection_jobs / tracked_jobs and frame_jobs.refine_jobs.
        min_score: results scoring lower are reported, not published (parameter min_score).
        tf_prefix: prefix of the TF child frames (parameter tf_prefix).
        boxes: class id -> object_box(model), for the bounding boxes of refined/detections.
        compute_ms: milliseconds the Refiner spent on the frame.
    """
    details = types.RefinementArray(
        header=header, refinements=[], latency_ms=0.0, compute_ms=float(compute_ms)
    )
    array = types.Detection3DArray(header=header, detections=[])
    poses, transforms, published, errors = [], [], [], []
    for i, job in enumerate(jobs):
        result = results.get(i)
        error, ok = outcome(job, result, min_score)
        published.append(ok)
        errors.append(error or "")
        details.refinements.append(_refinement(types, job, result, error))
        if not ok:
            continue
        array.detections.append(_detection(types, header, job, result, boxes))
        poses.append(types.PoseStamped(header=header, pose=pose_msg(types, result.T)))
        transforms.append(
            types.TransformStamped(
                header=header,
                child_frame_id=tf_prefix + job.instance_id,
                transform=transform_msg(types, result.T),
            )
        )
    return FrameMessages(details, array, poses, transforms, published, errors)


def _refinement(types: MessageTypes, job: Job, result: Any, error: str | None) -> Any:
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


def _detection(types: MessageTypes, header: Any, job: Job, result: Any, boxes: dict) -> Any:
    center_obj, extent = boxes[job.class_id]
    T_box = result.T.copy()
    T_box[:3, 3] = result.T[:3, :3] @ center_obj + result.T[:3, 3]  # box centre, mesh axes
    hypothesis = types.ObjectHypothesisWithPose(
        hypothesis=types.ObjectHypothesis(class_id=job.class_id, score=float(result.score)),
        pose=types.PoseWithCovariance(
            pose=pose_msg(types, result.T), covariance=np.zeros(36, dtype=np.float64)
        ),
    )
    sx, sy, sz = (float(v) for v in extent)
    return types.Detection3D(
        header=header,
        results=[hypothesis],
        bbox=types.BoundingBox3D(
            center=pose_msg(types, T_box), size=types.Vector3(x=sx, y=sy, z=sz)
        ),
        id=job.detection_id,
    )
