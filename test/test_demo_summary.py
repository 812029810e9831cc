"""attn6d-demo's JSON summary (demo.summarize): the camera's achieved rate, the accuracy over tracked frames
and the methods that refined the poses (issue 27), from hand-made records."""

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("geometry_msgs.msg")

from node_support import REPO

from attn6d_ros.mesh import load_mesh
from attn6d_ros.ros.codec import pose_msg, rclpy_types
from attn6d_ros.tools.demo import FrameRecord, Recording, summarize


def _record(index: int, model, *, tracked: bool, off_m: float, method: str, error: str = ""):
    T_gt = np.eye(4)
    T_gt[2, 3] = 0.6
    T = T_gt.copy()
    T[0, 3] += off_m
    refinement = SimpleNamespace(
        initial_pose=pose_msg(rclpy_types(), T_gt), refined_pose=pose_msg(rclpy_types(), T),
        tracked=tracked,
        method=method, error=error,
    )  # fmt: skip
    details = SimpleNamespace(refinements=[refinement], latency_ms=10.0 + index)
    return FrameRecord(index, T_gt, details)


def test_summary_reports_rate_tracked_accuracy_and_methods() -> None:
    model = load_mesh(REPO / "models" / "demo_object.ply")
    far = 0.5 * model.diameter  # ADD 0.5 d: a failure
    recording = Recording(publish_times=[100.0, 100.1, 100.2, 100.3, 100.4])
    recording.frames = {
        0: _record(0, model, tracked=False, off_m=0.0, method="network"),
        1: _record(1, model, tracked=True, off_m=0.0, method="align"),
        2: _record(2, model, tracked=True, off_m=far, method="align", error="alignment failed"),
        3: _record(3, model, tracked=True, off_m=0.0, method="align"),
        4: FrameRecord(4, np.eye(4)),  # published, never processed
    }
    summary = summarize(recording, model, published=5)
    assert summary["camera_rate_hz"] == pytest.approx(10.0)
    assert (summary["processed"], summary["tracked"], summary["refined_published"]) == (4, 3, 3)
    assert summary["refined_add_0.1d"] == 0.75
    assert summary["tracked_add_0.1d"] == pytest.approx(2 / 3, abs=1e-4)
    assert summary["methods"] == {"network": 1, "align": 3}


def test_summary_without_frames_has_no_rate() -> None:
    model = load_mesh(REPO / "models" / "demo_object.ply")
    summary = summarize(Recording(), model, published=0)
    assert summary["camera_rate_hz"] is None and summary["tracked_add_0.1d"] is None
