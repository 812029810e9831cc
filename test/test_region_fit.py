"""Region fit: undoes a known 6-DoF error on synthetic scenes, keeps the pose when the image says nothing,
checks its settings, and runs inside Refiner and evaluate."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from attn6d_ros.crop import CROP_SCALE, compute_window, crop_intrinsics
from attn6d_ros.evaluate import evaluate
from attn6d_ros.geometry import moved_along_ray, project_points
from attn6d_ros.metrics import pose_errors
from attn6d_ros.network import ModelConfig, RefinerNet
from attn6d_ros.refiner import Refiner
from attn6d_ros.region_fit import RegionFitConfig, _offset_pose, fit_region


def _perturbed(T_gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """3 % too far, turned 4° about a random axis and 3 mm to the side: what the network leaves."""
    T = moved_along_ray(T_gt, 1.03)
    axis = rng.normal(size=3)
    T[:3, :3] = (
        Rotation.from_rotvec(np.radians(4.0) * axis / np.linalg.norm(axis)).as_matrix() @ T[:3, :3]
    )
    T[0, 3] += 0.003
    return T


def test_undoes_a_known_six_dof_error(demo_scenes, demo_model, gl_renderer) -> None:
    rng = np.random.default_rng(5)
    before, after = [], []
    for case in demo_scenes:
        start = _perturbed(case.T_gt, rng)
        fitted = fit_region(case.image, case.K, start, demo_model, gl_renderer)
        assert fitted.score_gain > 0 and fitted.renders > 12 * RegionFitConfig().iterations
        for T, out in ((start, before), (fitted.T, after)):
            out.append(
                pose_errors(T, case.T_gt, case.K, demo_model.points, demo_model.diameter, False)
            )
    add_before = np.array([e.add_or_add_s for e in before])
    add_after = np.array([e.add_or_add_s for e in after])
    # Half the starts fail ADD 0.1 d (26.6 mm for this object); after the fit every one passes.
    assert np.mean(add_before < 0.1 * demo_model.diameter) <= 0.5
    assert np.all(add_after < 0.1 * demo_model.diameter)
    assert np.median(add_after) < 0.5 * np.median(add_before)
    assert np.median([e.rot_err_deg for e in after]) < 3.0  # from 4°


@pytest.mark.slow
def test_extra_starts_escape_a_rotation_the_local_search_keeps(
    demo_scenes, demo_model, gl_renderer
) -> None:
    # Turned 10 degrees about the optical axis and 2 % too far: from one start the search stops a few
    # degrees short; from seven (one of them turned back by 8 degrees) it gets to about a degree.
    single, multi = [], []
    for case in demo_scenes:
        start = moved_along_ray(case.T_gt, 1.02)
        start[:3, :3] = (
            Rotation.from_rotvec([0.0, 0.0, np.radians(10.0)]).as_matrix() @ start[:3, :3]
        )
        one = fit_region(case.image, case.K, start, demo_model, gl_renderer)
        seven = fit_region(case.image, case.K, start, demo_model, gl_renderer,
                           RegionFitConfig(start_turn_deg=8.0))  # fmt: skip
        assert seven.score_gain > 0 and seven.renders > 6 * one.renders
        for T, out in ((one.T, single), (seven.T, multi)):
            out.append(
                pose_errors(T, case.T_gt, case.K, demo_model.points, demo_model.diameter, False)
            )
    assert np.median([e.rot_err_deg for e in multi]) < 0.5 * np.median(
        [e.rot_err_deg for e in single]
    )
    assert np.median([e.rot_err_deg for e in multi]) < 2.0
    assert all(e.add_success for e in multi)


def test_keeps_the_pose_when_the_image_is_uniform(demo_scenes, demo_model, gl_renderer) -> None:
    case = demo_scenes[0]
    grey = np.full_like(case.image, 128)
    start = moved_along_ray(case.T_gt, 1.03)
    fitted = fit_region(grey, case.K, start, demo_model, gl_renderer)
    assert fitted.score_gain == 0.0
    np.testing.assert_array_equal(fitted.T, start)


def test_without_scan_or_iterations_the_pose_is_kept(demo_scenes, demo_model, gl_renderer) -> None:
    case = demo_scenes[0]
    start = moved_along_ray(case.T_gt, 1.03)
    cfg = RegionFitConfig(depth_steps=1, iterations=0)
    fitted = fit_region(case.image, case.K, start, demo_model, gl_renderer, cfg)
    assert fitted.renders == 1 and fitted.score_gain == 0.0
    np.testing.assert_array_equal(fitted.T, start)


def test_a_pose_behind_the_camera_is_an_error(demo_scenes, demo_model, gl_renderer) -> None:
    behind = demo_scenes[0].T_gt.copy()
    behind[2, 3] = -behind[2, 3]
    with pytest.raises(ValueError, match="behind"):
        fit_region(demo_scenes[0].image, demo_scenes[0].K, behind, demo_model, gl_renderer)


def test_offsets_move_the_pose_as_documented(demo_scenes, demo_model) -> None:
    case = demo_scenes[0]
    T = case.T_gt
    K_crop = crop_intrinsics(case.K, compute_window(case.K, T, demo_model.hull_vertices, scale=CROP_SCALE,
                                                    size_px=96))  # fmt: skip
    np.testing.assert_allclose(_offset_pose(T, np.zeros(6), K_crop), T, atol=1e-15)
    along = _offset_pose(T, np.r_[np.zeros(5), 0.02], K_crop)
    np.testing.assert_allclose(along, moved_along_ray(T, np.exp(0.02)), atol=1e-15)
    turned = _offset_pose(T, np.r_[0.0, 0.0, 0.1, 0.0, 0.0, 0.0], K_crop)
    np.testing.assert_array_equal(turned[:3, 3], T[:3, 3])  # about the object's origin
    np.testing.assert_allclose(
        turned[:3, :3], Rotation.from_rotvec([0, 0, 0.1]).as_matrix() @ T[:3, :3]
    )
    shifted = _offset_pose(T, np.r_[0.0, 0.0, 0.0, 2.0, -1.0, 0.0], K_crop)
    origin = np.zeros((1, 3))
    motion = project_points(K_crop, shifted, origin) - project_points(K_crop, T, origin)
    np.testing.assert_allclose(motion[0], [2.0, -1.0], atol=1e-9)  # crop pixels
    assert shifted[2, 3] == T[2, 3]


@pytest.mark.parametrize(
    ("field", "value"),
    [("crop_px", 16), ("crop_px", 96.0), ("colour_bins", 1), ("band_px", 0), ("iterations", -1),
     ("iterations", True), ("depth_steps", 4), ("depth_steps", 0), ("range_fraction", 0.0),
     ("rotation_step_deg", 0.0), ("shift_step_px", -1.0), ("depth_step", 0.7),
     ("min_information", -0.1), ("start_turn_deg", -1.0), ("start_turn_deg", 91.0)],
)  # fmt: skip
def test_bad_settings_name_the_field_and_value(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"{field} must .* got {value!r}"):
        RegionFitConfig(**{field: value})


def test_refiner_runs_it_after_the_last_stage_and_the_depth_search(
    demo_scenes, demo_model
) -> None:
    refiner = Refiner(RefinerNet(ModelConfig.lite(crop_size=64)), device="cpu")
    refiner.add_object("demo_object", demo_model)
    case = demo_scenes[3]
    T_init = _perturbed(case.T_gt, np.random.default_rng(1))
    plain = refiner.refine(case.image, case.K, [("demo_object", T_init)], stages=1)[0]
    assert plain.fit_motion_m is None and "region_fit" not in refiner.last_timings_ms
    both = refiner.refine(case.image, case.K, [("demo_object", T_init)], stages=1,
                          depth_search=True, region_fit=True)[0]  # fmt: skip
    assert both.ok and both.depth_factor is not None and both.fit_motion_m > 0
    assert (
        refiner.last_timings_ms["region_fit"] > 0 and refiner.last_timings_ms["depth_search"] > 0
    )
    np.testing.assert_array_equal(both.stage_poses[-1], plain.stage_poses[-1])  # the network's
    searched = moved_along_ray(both.stage_poses[-1], both.depth_factor)
    motion = np.linalg.norm((demo_model.points @ (both.T[:3, :3] - searched[:3, :3]).T
                             + both.T[:3, 3] - searched[:3, 3]), axis=1).mean()  # fmt: skip
    assert both.fit_motion_m == pytest.approx(motion, rel=1e-9)
    error = pose_errors(
        both.T, case.T_gt, case.K, demo_model.points, demo_model.diameter, False
    ).add_or_add_s
    start = pose_errors(
        T_init, case.T_gt, case.K, demo_model.points, demo_model.diameter, False
    ).add_or_add_s
    # An untrained network barely moves the pose; the fit undoes most of the error, to within ADD 0.1 d.
    assert error < 0.6 * start and error < 0.1 * demo_model.diameter
    refiner.renderer.close()


def test_evaluate_reports_a_region_fit_column(demo_scenes, demo_model) -> None:
    refiner = Refiner(RefinerNet(ModelConfig.lite(crop_size=64)), device="cpu",
                      region_fit_config=RegionFitConfig(iterations=2))  # fmt: skip
    refiner.add_object("demo_object", demo_model)
    report = evaluate(refiner, demo_scenes[:2], {"demo_object": demo_model}, stages=1, depth_search=True,
                      region_fit=True)  # fmt: skip
    columns = ["init", "stage_1", "depth_search", "region_fit"]
    summary = report["objects"]["demo_object"]
    assert list(summary["add_0.1d"]) == columns
    assert list(report["mean"]["median_depth_err_mm"]) == columns
    assert list(summary["occlusion"]["0-20%"]["add_0.1d"]) == columns
    refiner.renderer.close()
