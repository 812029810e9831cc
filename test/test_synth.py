"""Synthetic data: determinism, DeepIM perturbation statistics, occlusion bounds, crop alignment."""

from dataclasses import replace

import numpy as np
import pytest
from conftest import REPO

from attn6d_ros.crop import crop_intrinsics
from attn6d_ros.geometry import matrix_to_axis_angle, rotation_error_deg
from attn6d_ros.mesh import load_mesh
from attn6d_ros.synth import SceneGenerator, SynthConfig


@pytest.fixture(scope="module")
def generator() -> SceneGenerator:
    return SceneGenerator(
        [load_mesh(REPO / "models" / "demo_object.ply")], SynthConfig(crop_size=96)
    )


def test_samples_are_a_function_of_seed_and_index(generator: SceneGenerator) -> None:
    a = generator.training_sample(3, 17)
    b = generator.training_sample(3, 17)
    c = generator.training_sample(3, 18)
    for key in ("image", "render", "T_gt", "T_init", "T_cur", "K"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == a.render.shape == (96, 96, 3) and a.image.dtype == np.uint8


def test_perturbation_matches_deepim_statistics(generator: SceneGenerator) -> None:
    rng = np.random.default_rng(0)
    T_gt = np.eye(4)
    T_gt[2, 3] = 1.0
    rotations, translations, angles = [], [], []
    for _ in range(2000):
        T = generator.perturb(rng, T_gt)
        rotations.append(matrix_to_axis_angle(T[:3, :3]))
        translations.append(T[:3, 3] - T_gt[:3, 3])
        angles.append(rotation_error_deg(T, T_gt))
    # Small-angle: the rotation vector's components are close to the per-axis Euler noise (15 deg).
    np.testing.assert_allclose(np.degrees(np.std(rotations, axis=0)), 15.0, rtol=0.12)
    np.testing.assert_allclose(np.std(translations, axis=0), [0.01, 0.01, 0.05], rtol=0.08)
    assert max(angles) <= generator.cfg.max_rot_noise_deg  # DeepIM rejects larger perturbations


def test_rotation_only_samples_keep_the_true_translation() -> None:
    model = load_mesh(REPO / "models" / "demo_object.ply")
    generator = SceneGenerator([model], SynthConfig(crop_size=64, rotation_only_probability=1.0))
    for index in range(3):
        sample = generator.training_sample(4, index)
        np.testing.assert_array_equal(sample.T_cur[:3, 3], sample.T_gt[:3, 3])
        assert rotation_error_deg(sample.T_cur, sample.T_gt) > 0.1
        assert not np.allclose(sample.T_init[:3, 3], sample.T_gt[:3, 3])  # the window's pose
    generator.renderer.close()


def test_later_stage_poses_decouple_rotation_from_depth_on_request() -> None:
    # One factor for the whole pose: the samples with the smallest rotation error are also the nearest in
    # depth. One factor per part: a small rotation error says nothing about the depth error.
    T_gt = np.eye(4)
    T_gt[2, 3] = 1.0
    model = load_mesh(REPO / "models" / "demo_object.ply")
    correlation = {}
    for independent in (False, True):
        generator = SceneGenerator([model], SynthConfig(later_stage_independent=independent))
        rng = np.random.default_rng(7)
        poses = [generator.later_stage_pose(rng, T_gt) for _ in range(3000)]
        rot = np.array([rotation_error_deg(T, T_gt) for T in poses])
        depth = np.array([T[2, 3] - 1.0 for T in poses])
        aligned = rot < np.quantile(rot, 0.25)
        correlation[independent] = np.abs(depth[aligned]).mean() / np.abs(depth).mean()
        # Either way the depth noise is 5 cm times the factor: RMS 5 cm x sqrt(E[factor²]).
        low, high = generator.cfg.later_stage_scale
        rms_factor = np.sqrt((high**3 - low**3) / (3 * (high - low)))
        assert np.sqrt(np.mean(depth**2)) == pytest.approx(0.05 * rms_factor, rel=0.1)
    assert correlation[False] < 0.6  # aligned in rotation => near in depth
    assert 0.9 < correlation[True] < 1.1


def test_occlusion_stays_within_bounds(generator: SceneGenerator) -> None:
    occlusions = [generator.training_sample(1, i).occlusion for i in range(40)]
    assert max(occlusions) <= generator.cfg.max_occlusion + 1e-6
    assert any(o > 0.05 for o in occlusions)  # occluders do appear


def _ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    x = a[mask].astype(float) - a[mask].mean(axis=0)
    y = b[mask].astype(float) - b[mask].mean(axis=0)
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


def test_observation_crop_is_aligned_with_the_render_at_the_truth() -> None:
    # No clutter, occluders, noise or blur: the lit observation must line up with the flat render at the
    # true pose in the crop window of the initial pose, and not with a render shifted by two pixels.
    model = load_mesh(REPO / "models" / "demo_object.ply")
    cfg = replace(SynthConfig(crop_size=96), occluder_probability=0.0, clutter_objects=(0, 0),
                  noise_sigma=(0.0, 0.0), blur_probability=0.0)  # fmt: skip
    generator = SceneGenerator([model], cfg)
    for index in range(4):
        sample = generator.training_sample(9, index)
        assert sample.window.size_px == 96
        K_crop = crop_intrinsics(sample.K, sample.window)
        truth = generator.renderer.render(model, sample.T_gt, K_crop, 96, 96)
        shifted_K = K_crop.copy()
        shifted_K[0, 2] += 2.0
        shifted = generator.renderer.render(model, sample.T_gt, shifted_K, 96, 96)
        aligned = _ncc(sample.image, truth.rgb, truth.mask)
        # The flow target carries every pixel of the render at T_cur onto the object at the truth.
        current = generator.renderer.render(model, sample.T_cur, K_crop, 96, 96)
        flow = sample.flow
        np.testing.assert_array_equal(np.isfinite(flow).all(-1), current.mask)
        v, u = np.nonzero(current.mask)
        moved = np.rint(np.stack([u, v], 1) + flow[v, u]).astype(int)
        inside = (moved >= 0).all(1) & (moved < 96).all(1)
        hits = truth.mask[moved[inside, 1], moved[inside, 0]].mean()
        assert hits > 0.95, f"sample {index}: {hits:.2f} of the moved pixels land on the object"
        assert aligned > 0.6, f"sample {index}: correlation {aligned:.2f} with the truth"
        assert aligned > _ncc(sample.image, shifted.rgb, shifted.mask) + 0.02


def test_broad_appearance_changes_training_samples_but_never_the_test_scenes() -> None:
    model = load_mesh(REPO / "models" / "demo_object.ply")
    classic = SceneGenerator([model], SynthConfig(crop_size=64, broad_appearance=0.0))
    broad = SceneGenerator([model], SynthConfig(crop_size=64, broad_appearance=1.0))
    # The in-domain test set is the same whatever the training appearance.
    for i in range(3):
        assert np.array_equal(classic.test_scene(9, i).image, broad.test_scene(9, i).image)
    # Training samples: same poses and crop windows, another look.
    changed = 0
    for i in range(6):
        a, b = classic.training_sample(9, i), broad.training_sample(9, i)
        assert np.array_equal(a.T_gt, b.T_gt) and np.array_equal(a.T_init, b.T_init)
        assert b.image.dtype == np.uint8 and b.image.shape == (64, 64, 3)
        assert 0.0 <= b.occlusion <= 1.0
        changed += not np.array_equal(a.image, b.image)
    assert changed == 6
    classic.renderer.close()
    broad.renderer.close()


def test_broad_camera_casts_and_recolouring_stay_in_their_ranges() -> None:
    from attn6d_ros.synth import _broad_camera, _recolour_object

    rng = np.random.default_rng(0)
    cfg = SynthConfig()
    grey = np.full((40, 40, 3), 128.0, np.float32)
    ratios = []
    for _ in range(50):
        out = _broad_camera(rng, grey, 1.0, replace(cfg, jpeg_probability=0.0), 0.0)
        assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 255
        mean = out.reshape(-1, 3).mean(0)
        ratios.append(mean.max() / max(mean.min(), 1.0))
    # Per-channel white balance 0.7-1.4 (after gamma): casts happen, but never beyond 2x between channels.
    assert 1.1 < np.median(ratios) and max(ratios) < 2.0 ** (1 / cfg.gamma[0]) + 0.1
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    image = rng.uniform(0, 255, (40, 40, 3)).astype(np.float32)
    recoloured = [_recolour_object(rng, image, mask, cfg) for _ in range(20)]
    assert all(
        np.array_equal(r[~mask], image[~mask]) for r in recoloured
    )  # only the object's pixels
    assert sum(not np.array_equal(r[mask], image[mask]) for r in recoloured) >= 10
