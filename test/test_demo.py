"""attn6d-demo end to end (tiny random-init checkpoint, a few frames), its defaults; ROS-free node helpers."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from node_support import REPO, make_checkpoint


def test_demo_defaults_are_the_shipped_weights_and_objects() -> None:
    from attn6d_ros.demo import _parser

    args = _parser().parse_args([])
    assert args.checkpoint == "package://attn6d_ros/models/demo_refiner.pt"
    assert args.objects == "package://attn6d_ros/config/objects.yaml"
    assert (args.out, args.object_id) == ("demo_out", "demo_object")


def test_demo_without_weights_says_how_to_get_them(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "attn6d_ros.demo", "--checkpoint", str(tmp_path / "none.pt")],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 2 and "checkpoint not found" in result.stderr
    assert "make train-demo" in result.stderr and result.stdout == ""


def test_node_helpers_that_need_no_ros_do_not_import_it() -> None:
    # The core's own check is test_core_without_ros.py; these are the node's ROS-free parts.
    code = (
        "import sys\n"
        "import attn6d_ros.tracking, attn6d_ros.backpressure, attn6d_ros.params, attn6d_ros.overlay\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rclpy'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.ros
@pytest.mark.slow
def test_demo_prints_one_json_line_and_writes_overlays(ros_domain: int, tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / "m.pt")
    out = tmp_path / "demo_out"
    result = subprocess.run(
        [sys.executable, "-m", "attn6d_ros.demo", "--checkpoint", str(checkpoint), "--frames", "4",
         "--rate", "2", "--out", str(out), "--cpu-threads", "1", "--stages", "1", "--device", "cpu"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + (out / "node.log").read_text()
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    summary = json.loads(lines[0])
    assert summary["frames"] == 4 and 1 <= summary["processed"] <= 4
    for key in ("init_add_0.1d", "refined_add_0.1d"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["median_latency_ms"] > 0 and summary["dropped_frames"] >= 0
    assert summary["device"] == "cpu"
    pngs = sorted(out.glob("overlay_*.png"))
    assert len(pngs) == summary["overlay_frames"] >= 1
    from PIL import Image

    gif = Image.open(out / "overlay.gif")
    assert gif.n_frames == len(pngs) and Image.open(pngs[0]).size == (640, 480)
    assert "ready:" in (out / "node.log").read_text()
