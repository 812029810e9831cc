"""The same frames through the node with our fallbacks and with the real message_filters, tf2_ros and
cv_bridge (../shared/upstream, installed by `make setup`) give the same outputs: poses, scores, TF, the
decoded pixels of every accepted encoding and layout, and the overlay image. Skipped where the venv has no
upstream packages (a user's clone)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from node_support import make_checkpoint
from upstream_support import installed, require

pytestmark = [pytest.mark.ros, pytest.mark.slow]

RUNNER = Path(__file__).parent / "fallback_equivalence_run.py"


def _run(mode: str, checkpoint: Path, tmp_path: Path) -> dict[str, np.ndarray]:
    out = tmp_path / f"{mode}.npz"
    result = subprocess.run(
        [sys.executable, str(RUNNER), mode, str(checkpoint), str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, f"{mode} run failed:\n{result.stdout}\n{result.stderr}"
    with np.load(out) as saved:
        return dict(saved)


def test_node_outputs_equal_with_fallbacks_and_with_real_packages(
    ros_domain: int, tmp_path: Path
) -> None:
    require("message_filters")
    require("tf2_ros_py")
    have_cv_bridge = "cv_bridge" in installed().get("installed", [])
    checkpoint = make_checkpoint(tmp_path / "m.pt", stages=1)
    real = _run("real", checkpoint, tmp_path)
    fallback = _run("fallback", checkpoint, tmp_path)

    assert real["implementations"].tolist() == [True, True, have_cv_bridge]
    assert fallback["implementations"].tolist() == [False, False, False]
    assert real.keys() == fallback.keys()
    frames = sorted(int(k.split("_")[1]) for k in real if k.startswith("poses_"))
    assert len(frames) == 10
    for i in frames:
        # Same pixels in, same deterministic CPU network (1 thread): the same numbers out, to rounding.
        np.testing.assert_array_equal(real[f"decoded_{i}"], fallback[f"decoded_{i}"], f"frame {i}")
        np.testing.assert_allclose(real[f"poses_{i}"], fallback[f"poses_{i}"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(real[f"scores_{i}"], fallback[f"scores_{i}"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(real[f"tf_{i}"], fallback[f"tf_{i}"], rtol=0, atol=1e-9)
        assert real[f"tf_children_{i}"].tolist() == fallback[f"tf_children_{i}"].tolist()
        np.testing.assert_array_equal(real[f"overlay_{i}"], fallback[f"overlay_{i}"], f"frame {i}")
    # The refined poses are the TF poses (translation), so the comparison covers what users see.
    assert np.allclose(real["poses_0"][:, :3, 3], real["tf_0"][:, :3], atol=1e-9)
