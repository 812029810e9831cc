"""attn6d-bench prints one JSON object with the renderer timings and the per-stage split."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO


@pytest.mark.slow
def test_bench_prints_one_json_object() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "attn6d_ros.tools.bench", "--configs", "lite", "--objects", "1", "2",
         "--repeats", "1", "--no-node", "--device", "cpu"],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    report = json.loads(out.stdout)
    assert report["render"]["moderngl"]["ms_per_crop"] > 0
    lite = report["configs"]["lite"]
    assert lite["crop_size"] == 152 and lite["stages"] == 4
    for key in ("1_objects", "2_objects"):
        split = lite[key]["per_stage_ms"]
        assert set(split) == {"render", "network", "update"} and lite[key]["total_ms"] > 0
        assert lite[key]["align_ms"] > 0  # the alignment beside the network's time
        assert "depth_search_ms" not in lite[key] and "region_fit_ms" not in lite[key]
    assert report["peak_rss_mb"] > 0


@pytest.mark.slow
def test_bench_memory_prints_peak_rss_per_detection_count(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "test"))
    from node_support import make_checkpoint

    checkpoint = make_checkpoint(tmp_path / "m.pt")
    out = subprocess.run(
        [sys.executable, "-m", "attn6d_ros.tools.bench", "--memory", "17", "--checkpoint",
         str(checkpoint), "--device", "cpu"],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    memory = json.loads(out.stdout)["memory"]
    entry = memory["17"]  # one fresh process per count; 17 = a batch of 16 and one of 1
    assert (entry["detections"], entry["refined"], entry["max_batch"]) == (17, 17, 16)
    assert entry["peak_rss_mb"] >= entry["rss_after_warmup_mb"] > 0
