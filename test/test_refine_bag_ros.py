"""attn6d-refine-bag against the live node: a bag recorded by `attn6d-demo --record` is refined offline and
every frame the live node refined during the recording comes out the same (its refined/details are in the
bag); the refined poses are checked against the ground truth recorded beside them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from bag_support import read_bag

from attn6d_ros.ros.codec import pose_to_matrix, stamp_ns

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_demo_recording_is_refined_as_the_live_node_did(
    ros_domain: int, tmp_path: Path, demo_model, storage: str
) -> None:
    bag = tmp_path / "demo_bag"
    demo = subprocess.run(
        [sys.executable, "-m", "attn6d_ros.tools.demo", "--frames", "4", "--rate", "1", "--out",
         str(tmp_path / "demo_out"), "--cpu-threads", "1", "--device", "cpu", "--record", str(bag),
         "--record-storage", storage],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    assert json.loads(demo.stdout)["bag"] == str(bag)
    # The two commands of the README, with the demo node's settings (shipped weights, 1 CPU thread).
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump({"/**": {"ros__parameters": {"cpu_threads": 1, "device": "cpu"}}})
    )
    out = tmp_path / "refined_bag"
    tool = subprocess.run(
        [sys.executable, "-m", "attn6d_ros.ros.refine_bag", str(bag), str(out), "--params", str(params)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert tool.returncode == 0, tool.stderr
    summary = json.loads(tool.stdout)
    assert summary["images"] == 4 and summary["frames"] == 4, summary

    recorded, refined = read_bag(bag), read_bag(out)
    truth = {
        stamp_ns(m.header): pose_to_matrix(m.pose)
        for _, m in recorded["/demo/camera/ground_truth"]
    }
    live = {stamp_ns(m.header): m for _, m in recorded["/demo/refined/details"]}
    ours = {stamp_ns(m.header): m for _, m in refined["/refined/details"]}
    assert set(ours) == set(truth) and len(live) >= 2 and set(live) <= set(ours)
    for stamp, live_msg in live.items():
        msg = ours[stamp]
        assert msg.header.frame_id == live_msg.header.frame_id == "demo_camera_optical_frame"
        for a, b in zip(msg.refinements, live_msg.refinements, strict=True):
            assert (a.instance_id, a.object_id, a.error, a.tracked) == (
                b.instance_id, b.object_id, b.error, b.tracked,
            )  # fmt: skip
            assert np.allclose(
                pose_to_matrix(a.refined_pose), pose_to_matrix(b.refined_pose), atol=1e-7
            )
            assert np.allclose(
                pose_to_matrix(a.initial_pose), pose_to_matrix(b.initial_pose), atol=1e-12
            )
            assert a.score == pytest.approx(b.score, abs=1e-6) and len(a.stage_poses) == 4
    from attn6d_ros.metrics import add_or_add_s

    good = 0
    for stamp, msg in ours.items():
        T = pose_to_matrix(msg.refinements[0].refined_pose)
        error = add_or_add_s(T, truth[stamp], demo_model.points, demo_model.symmetric)
        good += error < 0.1 * demo_model.diameter
    assert good >= 3, summary
    stamps = [stamp_ns(m.header) for _, m in refined["/refined/pose"]]
    assert stamps == sorted(stamps) and set(stamps) <= set(ours) and len(stamps) >= good
