"""attn6d-demo end to end (tiny random-init checkpoint, a few frames), its defaults; ROS-free node helpers."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from node_support import REPO, make_checkpoint


def test_demo_defaults_are_the_shipped_weights_and_objects() -> None:
    from attn6d_ros.tools.demo import _parser

    args = _parser().parse_args([])
    assert args.checkpoint == "package://attn6d_ros/models/demo_refiner.pt"
    assert args.objects == "package://attn6d_ros/config/objects.yaml"
    assert (args.out, args.object_id) == ("demo_out", "demo_object")


def test_demo_without_weights_says_how_to_get_them(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "attn6d_ros.tools.demo", "--checkpoint", str(tmp_path / "none.pt")],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 2 and "checkpoint not found" in result.stderr
    assert "make train-demo" in result.stderr and result.stdout == ""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--detect-every", "0"], "--detect-every (0) must be >= 1"),
        (["--param", "min_score=0.5"], "--param expects NAME:=VALUE, got ['min_score=0.5']"),
    ],
)
def test_demo_bad_arguments_are_named(extra: list, message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "attn6d_ros.tools.demo", *extra],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 2 and message in result.stderr


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.parametrize("detect_every", [1, 2])
def test_demo_prints_one_json_line_and_writes_overlays(
    ros_domain: int, tmp_path: Path, detect_every: int
) -> None:
    checkpoint = make_checkpoint(tmp_path / "m.pt")
    out = tmp_path / "demo_out"
    result = subprocess.run(
        [sys.executable, "-m", "attn6d_ros.tools.demo", "--checkpoint", str(checkpoint), "--frames", "4",
         "--rate", "2", "--out", str(out), "--cpu-threads", "1", "--stages", "1", "--device", "cpu",
         "--detect-every", str(detect_every),
         # Random weights score anything: let every refinement start and continue a track.
         "--param", "min_score:=0.0", "--param", "tracking.min_score:=0.0", "--param", "guard:=false"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + (out / "node.log").read_text()
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    summary = json.loads(lines[0])
    assert summary["frames"] == 4 and 1 <= summary["processed"] <= 4
    if detect_every == 1:
        assert summary["tracked"] == 0
    else:  # frames 1 and 3 have no detections: refined from the poses of frames 0 and 2
        assert 1 <= summary["tracked"] <= 2, summary
        assert "'tracking.wait_s': 0.2" in (out / "node.log").read_text()
    for key in ("init_add_0.1d", "refined_add_0.1d"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["median_latency_ms"] > 0
    # Frames the node dropped while busy were never processed.
    assert 0 <= summary["dropped_frames"] <= summary["frames"] - summary["processed"], summary
    assert summary["device"] == "cpu"
    pngs = sorted(out.glob("overlay_*.png"))
    assert len(pngs) == summary["overlay_frames"] >= 1
    from PIL import Image

    gif = Image.open(out / "overlay.gif")
    assert gif.n_frames == len(pngs) and Image.open(pngs[0]).size == (640, 480)
    assert "ready:" in (out / "node.log").read_text()
