"""The agreement of a pose with the image's own colours, and the guard that keeps worse refinements from being
passed on as refined (library and node outcome)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from attn6d_ros.geometry import axis_angle_to_matrix
from attn6d_ros.network import ModelConfig, RefinerNet
from attn6d_ros.pose_check import (
    AgreementConfig,
    align_fit_verdict,
    guard_verdict,
    silhouette_agreement,
)
from attn6d_ros.refiner import Refiner
from attn6d_ros.ros.frame_jobs import Job, outcome


def _turned(T: np.ndarray, degrees: float, shift_m: float = 0.0) -> np.ndarray:
    out = T.copy()
    out[:3, :3] = axis_angle_to_matrix([0.0, np.radians(degrees), 0.0]) @ T[:3, :3]
    out[0, 3] += shift_m
    return out


def test_the_true_pose_agrees_best(demo_scenes, demo_model, gl_renderer) -> None:
    wins = 0
    for case in demo_scenes:
        poses = [case.T_gt, _turned(case.T_gt, 12.0, 0.01), case.T_init]
        true, turned, initial = silhouette_agreement(
            case.image, case.K, poses, demo_model, gl_renderer
        )
        assert 0.0 <= min(true, turned, initial) and max(true, turned, initial) <= 1.0
        wins += true > turned and true > initial
    assert wins >= len(demo_scenes) - 1


def test_a_colour_cast_does_not_change_the_verdict(demo_scenes, demo_model, gl_renderer) -> None:
    for case in demo_scenes:
        cast = np.clip(case.image * np.array([1.5, 0.7, 0.9]), 0, 255).astype(np.uint8)
        poses = [case.T_gt, _turned(case.T_gt, 15.0, 0.015)]
        plain = silhouette_agreement(case.image, case.K, poses, demo_model, gl_renderer)
        tinted = silhouette_agreement(cast, case.K, poses, demo_model, gl_renderer)
        assert (plain[0] > plain[1]) == (tinted[0] > tinted[1])
        assert abs(plain[0] - tinted[0]) < 0.15  # clipping at 255 and the bins move it a little


def test_a_uniform_image_says_nothing(demo_scenes, demo_model, gl_renderer) -> None:
    case = demo_scenes[0]
    flat = np.full_like(case.image, 90)
    assert silhouette_agreement(flat, case.K, [case.T_gt], demo_model, gl_renderer)[0] < 0.05


def test_guard_verdict_and_config() -> None:
    assert guard_verdict(0.5, 0.5, 0.0) is None and guard_verdict(0.5, 0.45, 0.1) is None
    reason = guard_verdict(0.5, 0.3, 0.0)
    assert reason.startswith("guard:") and "0.300 < 0.500" in reason
    with pytest.raises(ValueError, match="guard_margin"):
        AgreementConfig(guard_margin=-0.1)
    assert align_fit_verdict(None, 2.2) is None and align_fit_verdict(2.2, 2.2) is None
    assert "2.50 > max_align_energy 2.20" in align_fit_verdict(2.5, 2.2)
    with pytest.raises(ValueError, match=r"max_align_energy must be > 0, got 0\.0"):
        AgreementConfig(max_align_energy=0.0)


def _refiner_that_shifts(demo_model, shift_px: float) -> Refiner:
    """A lite refiner whose every stage moves the object `shift_px` crop pixels sideways."""
    net = RefinerNet(ModelConfig.lite(crop_size=64))
    with torch.no_grad():
        bias = net.stages[0].heads[0].regressor[-1].bias
        bias.copy_(torch.tensor([shift_px / net.cfg.xy_output_scale, 0.0]))
    refiner = Refiner(net, device="cpu")
    refiner.add_object("demo_object", demo_model)
    return refiner


def test_refiner_flags_a_refinement_that_made_the_pose_worse(demo_scenes, demo_model) -> None:
    case = demo_scenes[1]
    bad = _refiner_that_shifts(demo_model, 12.0)
    result = bad.refine(case.image, case.K, [("demo_object", case.T_gt)])[0]
    assert result.guard is not None and not result.converged
    assert result.agreement < result.agreement_init
    # From a wrong coarse pose the same network cannot make it worse than identity does...
    still = _refiner_that_shifts(demo_model, 0.0)
    kept = still.refine(case.image, case.K, [("demo_object", case.T_init)])[0]
    assert kept.guard is None and kept.agreement == pytest.approx(kept.agreement_init)
    # ... and without the guard nothing is judged.
    off = bad.refine(case.image, case.K, [("demo_object", case.T_gt)], guard=False)[0]
    assert off.guard is None and off.agreement is None and off.agreement_init is None
    assert "guard" not in bad.last_timings_ms
    bad.refine(case.image, case.K, [("demo_object", case.T_gt)])
    assert bad.last_timings_ms["guard"] > 0


def test_node_outcome_does_not_publish_a_guarded_refinement() -> None:
    job = Job("drill", "", "demo_object", None, np.eye(4), None, "detections[0]")
    good = SimpleNamespace(error=None, score=0.8, guard=None)
    worse = SimpleNamespace(
        error=None, score=0.8, guard="guard: the refined pose agrees less (0.2 < 0.4)"
    )
    assert outcome(job, good, 0.2) == (None, True)
    error, published = outcome(job, worse, 0.2)
    assert not published and error.startswith("guard:") and "not published as refined" in error
