"""Depth search: finds a known depth error on synthetic scenes, moves poses only along their ray, keeps the
pose when the image says nothing, checks its settings, and runs inside Refiner and evaluate."""

import numpy as np
import pytest

from attn6d_ros.depth_search import (
    DepthSearchConfig,
    _parabola_peak,
    search_depth,
)
from attn6d_ros.evaluate import evaluate
from attn6d_ros.geometry import moved_along_ray
from attn6d_ros.network import ModelConfig, RefinerNet
from attn6d_ros.refiner import Refiner


@pytest.mark.parametrize("error", [0.96, 1.045])
def test_finds_a_known_depth_error(demo_scenes, demo_model, gl_renderer, error: float) -> None:
    remaining = []
    for case in demo_scenes:
        found = search_depth(
            case.image, case.K, moved_along_ray(case.T_gt, error), demo_model, gl_renderer
        )
        assert found.peaked
        remaining.append(abs(found.T[2, 3] / case.T_gt[2, 3] - 1.0))
    # 4-4.5 % of the distance before; the threshold of ADD 0.1 d is about 3 % at 1 m for this object.
    assert np.median(remaining) < 0.01
    assert max(remaining) < 0.025


def test_moves_the_pose_only_along_its_viewing_ray(demo_scenes, demo_model, gl_renderer) -> None:
    case = demo_scenes[0]
    start = moved_along_ray(case.T_gt, 1.04)
    start[:3, 3] += (0.01, -0.005, 0.0)  # off the true ray: the search does not correct this
    found = search_depth(case.image, case.K, start, demo_model, gl_renderer)
    np.testing.assert_array_equal(found.T[:3, :3], start[:3, :3])
    np.testing.assert_allclose(found.T[:3, 3], found.factor * start[:3, 3], rtol=1e-12)
    np.testing.assert_array_equal(found.T[3], [0, 0, 0, 1])
    assert found.peaked and np.exp(-0.08) <= found.factor <= np.exp(0.08)  # within the range


def test_keeps_the_pose_when_the_image_is_uniform(demo_scenes, demo_model, gl_renderer) -> None:
    case = demo_scenes[0]
    grey = np.full_like(case.image, 128)
    found = search_depth(grey, case.K, case.T_gt, demo_model, gl_renderer)
    assert not found.peaked and found.factor == 1.0
    np.testing.assert_array_equal(found.T, case.T_gt)


def test_a_pose_behind_the_camera_is_an_error(demo_scenes, demo_model, gl_renderer) -> None:
    case = demo_scenes[0]
    behind = case.T_gt.copy()
    behind[2, 3] = -behind[2, 3]
    with pytest.raises(ValueError, match="behind"):
        search_depth(case.image, case.K, behind, demo_model, gl_renderer)


@pytest.mark.parametrize(
    ("field", "value"),
    [("range_fraction", 0.0), ("range_fraction", 0.7), ("coarse_steps", 4), ("fine_steps", 1),
     ("crop_px", 16), ("colour_bins", 1), ("band_px", 0), ("coarse_steps", 5.0)],
)  # fmt: skip
def test_bad_settings_name_the_field_and_value(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"{field} must .* got {value!r}"):
        DepthSearchConfig(**{field: value})


def test_parabola_peak_lies_towards_the_higher_neighbour() -> None:
    assert _parabola_peak(0.0, 1.0, 0.0) == 0.0
    assert _parabola_peak(1.0, 2.0, 0.0) == pytest.approx(-1.0 / 6.0)
    assert _parabola_peak(0.0, 2.0, 1.0) == pytest.approx(1.0 / 6.0)
    assert _parabola_peak(1.0, 1.0, 1.0) == 0.0  # flat: no vertex


def test_refiner_runs_it_after_the_last_stage(demo_scenes, demo_model) -> None:
    refiner = Refiner(RefinerNet(ModelConfig.lite(crop_size=64)), device="cpu")
    refiner.add_object("demo_object", demo_model)
    case = demo_scenes[1]
    T_init = moved_along_ray(case.T_gt, 1.04)
    plain = refiner.refine(case.image, case.K, [("demo_object", T_init)], stages=1)[0]
    assert plain.depth_factor is None and "depth_search" not in refiner.last_timings_ms
    result = refiner.refine(case.image, case.K, [("demo_object", T_init)], stages=1,
                            depth_search=True)[0]  # fmt: skip
    assert result.ok and result.depth_factor is not None
    assert refiner.last_timings_ms["depth_search"] > 0
    last = result.stage_poses[-1]
    np.testing.assert_allclose(result.T[:3, 3], result.depth_factor * last[:3, 3], rtol=1e-12)
    np.testing.assert_array_equal(result.T[:3, :3], last[:3, :3])
    # An untrained network keeps the pose; the search alone undoes most of the 4 % error.
    assert abs(result.T[2, 3] / case.T_gt[2, 3] - 1.0) < 0.015
    refiner.renderer.close()


def test_evaluate_reports_a_depth_search_column(demo_scenes, demo_model) -> None:
    refiner = Refiner(RefinerNet(ModelConfig.lite(crop_size=64)), device="cpu")
    refiner.add_object("demo_object", demo_model)
    report = evaluate(
        refiner, demo_scenes[:2], {"demo_object": demo_model}, stages=1, depth_search=True
    )
    summary = report["objects"]["demo_object"]
    assert list(summary["add_0.1d"]) == ["init", "stage_1", "depth_search"]
    assert list(report["mean"]["median_depth_err_mm"]) == ["init", "stage_1", "depth_search"]
    assert list(summary["occlusion"]["0-20%"]["add_0.1d"]) == ["init", "stage_1", "depth_search"]
    refiner.renderer.close()
