"""Region-based alignment (attn6d_ros/align): convergence from known offsets in each degree of freedom, under
occlusion, with a colour cast, at the image border and for a symmetric object; cached templates; bad inputs
answered with an error; the Refiner's align stage and its alignment-only mode."""

import dataclasses
import logging

import numpy as np
import pytest
import trimesh

from attn6d_ros.align import (
    AlignConfig,
    TemplateConfig,
    ViewTemplates,
    align_pose,
    load_or_build_templates,
    outline_energy,
)
from attn6d_ros.align.templates import template_key
from attn6d_ros.evaluate import synthetic_cases
from attn6d_ros.geometry import axis_angle_to_matrix, rotation_error_deg
from attn6d_ros.mesh import model_from_arrays
from attn6d_ros.metrics import pose_errors
from attn6d_ros.network import ModelConfig, RefinerNet
from attn6d_ros.pose_check import AgreementConfig
from attn6d_ros.refiner import Refiner
from attn6d_ros.render import Light
from attn6d_ros.synth import SynthConfig

# Fewer, smaller views than the default (642 instead of 2562, 240 px): quick to build, same method.
SMALL = TemplateConfig(subdivisions=3, image_px=240)
CONFIG = AlignConfig(templates=SMALL)
K = np.array([[600.0, 0.0, 320.0], [0.0, 600.0, 240.0], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("align_cache")


@pytest.fixture(scope="module")
def demo_templates(demo_model, gl_renderer, cache_dir) -> ViewTemplates:
    return load_or_build_templates(demo_model, SMALL, renderer=gl_renderer, cache_dir=cache_dir)[0]


def _offset(T: np.ndarray, rotvec_deg=(0.0, 0.0, 0.0), shift=(0.0, 0.0, 0.0)) -> np.ndarray:
    """``T`` turned about its origin (camera axes) and shifted by ``shift`` times its distance (camera
    frame)."""
    moved = T.copy()
    moved[:3, :3] = axis_angle_to_matrix(np.radians(rotvec_deg)) @ T[:3, :3]
    moved[:3, 3] += np.asarray(shift) * T[2, 3]
    return moved


def _add(model, T: np.ndarray, T_gt: np.ndarray) -> float:
    """ADD (ADD-S for symmetric models), metres."""
    return pose_errors(T, T_gt, K, model.points, model.diameter, model.symmetric).add_or_add_s


def _scene(renderer, model, T_gt: np.ndarray, background: np.ndarray, seed: int = 0) -> np.ndarray:
    """The lit object over ``background`` (H, W, 3 float 0..255), with sensor noise; uint8."""
    light = Light(direction_cam=(0.3, -0.5, -1.0))
    out = renderer.render(model, T_gt, K, 640, 480, light=light)
    image = np.where(out.mask[:, :, None], out.rgb.astype(np.float32), background)
    noise = np.random.default_rng(seed).normal(0.0, 4.0, size=image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _textured_background(seed: int, base=(90.0, 140.0, 110.0)) -> np.ndarray:
    """Blocks of random colours around ``base`` with a stripe texture."""
    rng = np.random.default_rng(seed)
    blocks = rng.uniform(-60, 60, size=(6, 8, 3)) + np.asarray(base)
    image = np.kron(blocks, np.ones((80, 80, 1)))
    yy, xx = np.mgrid[0:480, 0:640]
    stripes = (np.sin((xx + 0.6 * yy) / 6.0) > 0)[:, :, None] * 25.0
    return np.clip(image + stripes, 0, 255)


# About what the network's stages leave (README: median 4.7 degrees, depth 1.7 % of the distance): 8 degrees
# about one axis, 1 % of the distance sideways (6 px at 600 px focal length), 3 % in depth, or all at once.
OFFSETS = {
    "rx": dict(rotvec_deg=(8.0, 0.0, 0.0)),
    "ry": dict(rotvec_deg=(0.0, -8.0, 0.0)),
    "rz": dict(rotvec_deg=(0.0, 0.0, 8.0)),
    "tx": dict(shift=(0.01, 0.0, 0.0)),
    "ty": dict(shift=(0.0, -0.01, 0.0)),
    "tz": dict(shift=(0.0, 0.0, 0.03)),
    "all": dict(rotvec_deg=(5.0, -4.0, 5.0), shift=(0.007, -0.005, 0.025)),
}


@pytest.mark.parametrize("dof", list(OFFSETS))
def test_converges_from_a_known_offset(dof, demo_scenes, demo_model, demo_templates) -> None:
    for case in demo_scenes[:3]:
        start = _offset(case.T_gt, **OFFSETS[dof])
        result = align_pose(case.image, case.K, start, demo_templates, CONFIG)
        assert result.ok and result.valid_lines >= CONFIG.min_lines
        # Within 4 % of the diameter (ADD; the usual threshold is 10 %), from 3-14 %.
        assert _add(demo_model, result.T, case.T_gt) < 0.04 * demo_model.diameter, dof
        if OFFSETS[dof].get("rotvec_deg"):  # from 8 degrees
            assert rotation_error_deg(result.T, case.T_gt) < 2.0, dof
        else:  # the error along the offset's axis falls to under 30 % of the offset
            axis = int(np.argmax(np.abs(OFFSETS[dof]["shift"])))
            offset = start[axis, 3] - case.T_gt[axis, 3]
            assert abs(result.T[axis, 3] - case.T_gt[axis, 3]) < 0.3 * abs(offset), dof


def test_occluded_objects_still_converge(demo_model, demo_templates) -> None:
    synth = SynthConfig(crop_size=64, occlusion_range=(0.2, 0.4), occluder_probability=1.0)
    cases = synthetic_cases({"demo_object": demo_model}, 4, seed=5, synth=synth)
    after = []
    for case in cases:
        assert 0.15 < case.occlusion < 0.45
        start = _offset(case.T_gt, rotvec_deg=(3.0, -3.0, 3.0), shift=(0.005, 0.004, 0.02))
        result = align_pose(case.image, case.K, start, demo_templates, CONFIG)
        assert result.ok
        after.append(_add(demo_model, result.T, case.T_gt) / demo_model.diameter)
    assert np.mean(np.array(after) < 0.1) >= 0.75, after


def test_colour_cast_and_a_background_of_the_same_hue(demo_model, gl_renderer, demo_templates):
    # The mesh's colours say little about the image: the object is cast (x1.5, x0.7, x0.9) and the
    # background has the cast object's mean hue, only darker. The colours are learned from the image.
    gain = np.array([1.5, 0.7, 0.9], np.float32)
    cast = dataclasses.replace(demo_model, colors=np.clip(demo_model.colors * gain, 0.0, 1.0))
    mean = np.clip(demo_model.colors.mean(axis=0) * gain, 0.0, 1.0) * 255.0
    T_gt = np.eye(4)
    T_gt[:3, :3] = axis_angle_to_matrix([0.5, -0.6, 0.3])
    T_gt[:3, 3] = [0.02, -0.01, 0.75]
    image = _scene(gl_renderer, cast, T_gt, _textured_background(1, base=0.6 * mean))
    for offset in (OFFSETS["all"], dict(rotvec_deg=(-5.0, 3.0, -4.0), shift=(-0.01, 0.0, -0.03))):
        start = _offset(T_gt, **offset)
        result = align_pose(image, K, start, demo_templates, CONFIG)
        assert result.ok
        assert _add(demo_model, result.T, T_gt) < 0.05 * demo_model.diameter


def test_object_across_the_image_border(demo_model, gl_renderer, demo_templates) -> None:
    # The object's origin 40 px inside the right edge: a fifth of its silhouette lies outside the image.
    # Without its right-hand outline, depth and sideways shift are nearly interchangeable: the alignment
    # converges more slowly there (10 % of the diameter to 5.4 % in the default iterations; 1.3 % with the
    # object 180 px inside).
    T_gt = np.eye(4)
    T_gt[:3, :3] = axis_angle_to_matrix([0.3, 0.8, -0.2])
    z = 0.8
    T_gt[:3, 3] = [(600 - K[0, 2]) / K[0, 0] * z, 0.01, z]
    image = _scene(gl_renderer, demo_model, T_gt, _textured_background(2))
    start = _offset(T_gt, rotvec_deg=(3.0, 4.0, -4.0), shift=(-0.008, 0.005, 0.03))
    result = align_pose(image, K, start, demo_templates, CONFIG)
    # Lines outside the image are dropped.
    assert result.ok and result.valid_lines < 0.85 * SMALL.points_per_view
    before, after = _add(demo_model, start, T_gt), _add(demo_model, result.T, T_gt)
    assert after < 0.06 * demo_model.diameter and after < 0.6 * before, (before, after)


def test_symmetric_object(gl_renderer, cache_dir) -> None:
    # A two-coloured cylinder, symmetric about its axis: the alignment does not care which way it is
    # turned about that axis, and ADD-S judges it.
    mesh = trimesh.creation.cylinder(radius=0.04, height=0.16, sections=48)
    colors = np.where(mesh.vertices[:, 2:3] > 0, [0.9, 0.7, 0.1], [0.8, 0.2, 0.2])
    model = model_from_arrays(mesh.vertices, mesh.faces, colors, symmetric=True, name="cylinder")
    templates, _ = load_or_build_templates(model, SMALL, renderer=gl_renderer, cache_dir=cache_dir)
    T_gt = np.eye(4)
    T_gt[:3, :3] = axis_angle_to_matrix([1.1, 0.3, 0.2])
    T_gt[:3, 3] = [-0.03, 0.02, 0.6]
    image = _scene(gl_renderer, model, T_gt, _textured_background(3))
    # Known limit (docs/experiments.md): from 8 degrees and 4 % of the distance off at once, the cylinder's
    # shaded side is learned as background and the alignment settles on a narrower, farther cylinder.
    for offset in (OFFSETS["tz"], dict(rotvec_deg=(0.0, 0.0, 9.0), shift=(0.0, 0.0, -0.04))):
        start = _offset(T_gt, **offset)
        result = align_pose(image, K, start, templates, CONFIG)
        assert result.ok
        before, after = _add(model, start, T_gt), _add(model, result.T, T_gt)
        assert after < 0.05 * model.diameter < before and after < 0.4 * before, (before, after)


def test_templates_are_cached_and_rebuilt_when_the_mesh_changes(demo_model, gl_renderer, tmp_path):
    tiny = TemplateConfig(subdivisions=1, image_px=96, points_per_view=50)
    first, built = load_or_build_templates(
        demo_model, tiny, renderer=gl_renderer, cache_dir=tmp_path
    )
    assert built and len(first.directions) == 42 and first.points.shape == (42, 50, 3)
    files = list((tmp_path / "align_templates").glob("*.npz"))
    assert [f.stem for f in files] == [first.key]
    # A second construction reads the file: no renderer is needed (None would create one).
    again, built = load_or_build_templates(demo_model, tiny, cache_dir=tmp_path)
    assert not built and again.key == first.key
    np.testing.assert_array_equal(again.points, first.points)
    # A changed mesh (2 % larger) or changed settings hash differently and are built anew.
    bigger = dataclasses.replace(demo_model, vertices=demo_model.vertices * 1.02)
    changed, built = load_or_build_templates(
        bigger, tiny, renderer=gl_renderer, cache_dir=tmp_path
    )
    assert built and changed.key != first.key
    assert template_key(demo_model, dataclasses.replace(tiny, points_per_view=60)) != first.key
    # An unreadable file is rebuilt rather than trusted.
    files[0].write_bytes(b"not a template file")
    _, built = load_or_build_templates(demo_model, tiny, renderer=gl_renderer, cache_dir=tmp_path)
    assert built


def test_bad_inputs_are_answered_with_an_error(demo_scenes, demo_templates) -> None:
    case = demo_scenes[0]
    behind = case.T_gt.copy()
    behind[2, 3] = -0.5
    outside = case.T_gt.copy()
    outside[0, 3] += 4.0 * outside[2, 3]  # far to the right of the image
    empty = dataclasses.replace(demo_templates, valid=np.zeros_like(demo_templates.valid))
    for T, templates, message in (
        (behind, demo_templates, "behind"),
        (outside, demo_templates, "inside the 640x480 image"),
        (case.T_gt, empty, "no contour points"),
    ):
        result = align_pose(case.image, case.K, T, templates, CONFIG)
        assert not result.ok and message in result.error
        np.testing.assert_array_equal(result.T, T)  # the input pose, untouched
    with pytest.raises(ValueError, match="image must be an HxWx3 uint8"):
        align_pose(case.image.astype(np.float32), case.K, case.T_gt, demo_templates, CONFIG)


def test_a_uniform_image_leaves_the_pose(demo_scenes, demo_model, demo_templates) -> None:
    case = demo_scenes[0]
    grey = np.full_like(case.image, 128)
    start = _offset(case.T_gt, **OFFSETS["all"])
    result = align_pose(grey, case.K, start, demo_templates, CONFIG)
    assert _add(demo_model, result.T, start) < 0.01 * demo_model.diameter


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"scales": (4, 2), "sigma_px": (5.0,)}, "scales and sigma_px"),
        ({"scales": (0,), "sigma_px": (1.0,)}, "scales must be integers in [1, 32]"),
        ({"newton_steps": 0}, "newton_steps must be an integer in [1, 20], got 0"),
        ({"step_amplitude": 0.7}, "step_amplitude must be in (0.0, 0.5], got 0.7"),
        ({"start_turn_deg": 120.0}, "start_turn_deg must be in [0, 90], got 120.0"),
    ],
)
def test_config_errors_name_the_setting(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        AlignConfig(**changes)
    with pytest.raises(ValueError, match=r"TemplateConfig\.subdivisions"):
        TemplateConfig(subdivisions=9)


@pytest.fixture(scope="module")
def identity_refiner(demo_model, cache_dir) -> Refiner:
    # An untrained network predicts the identity update (zero-initialised output layers).
    refiner = Refiner(RefinerNet(ModelConfig.lite(crop_size=64)), device="cpu",
                      align_config=CONFIG, align_cache_dir=cache_dir)  # fmt: skip
    refiner.add_object("drill", demo_model)
    return refiner


def test_refiner_aligns_as_its_final_stage(identity_refiner, demo_scenes, demo_model) -> None:
    case = demo_scenes[1]
    start = _offset(case.T_gt, **OFFSETS["all"])
    plain = identity_refiner.refine(case.image, case.K, [("drill", start)])[0]
    assert plain.align_motion_m is None and plain.align_lines is None
    result = identity_refiner.refine(case.image, case.K, [("drill", start)], align=True)[0]
    assert result.ok and result.align_error is None and result.align_lines >= CONFIG.min_lines
    assert len(result.stage_poses) == 4  # the network's stages ran first (identity here)
    assert _add(demo_model, result.T, case.T_gt) < 0.05 * demo_model.diameter
    assert result.align_motion_m == pytest.approx(_add(demo_model, result.T, start), rel=1e-6)
    assert result.score > plain.score and np.isfinite(result.align_energy)
    assert identity_refiner.last_timings_ms["align"] > 0


def test_refiner_aligns_without_the_network(identity_refiner, demo_scenes, demo_model) -> None:
    case = demo_scenes[2]
    start = _offset(case.T_gt, **OFFSETS["all"])
    result = identity_refiner.refine(case.image, case.K, [("drill", start)], stages=0, align=True)[
        0
    ]
    assert (
        result.ok and result.stage_poses == [] and identity_refiner.last_timings_ms["network"] == 0
    )
    assert _add(demo_model, result.T, case.T_gt) < 0.05 * demo_model.diameter


def test_refiner_reports_a_failed_alignment(identity_refiner, demo_scenes) -> None:
    # Half the object off the image's right edge and the image's colours uniform: too few lines. After the
    # network the pose is kept with align_error; with the alignment alone the detection has an error.
    case = demo_scenes[0]
    grey = np.full_like(case.image, 128)
    T = case.T_gt.copy()
    T[0, 3] = (639 - case.K[0, 2]) / case.K[0, 0] * T[2, 3] + 0.6 * 0.266
    kept = identity_refiner.refine(grey, case.K, [("drill", T)], align=True)[0]
    alone = identity_refiner.refine(grey, case.K, [("drill", T)], stages=0, align=True)[0]
    assert kept.ok and kept.align_error and kept.align_motion_m is None
    np.testing.assert_allclose(kept.T, T)
    assert not alone.ok and "alignment failed" in alone.error


def test_prepare_alignment_builds_once(demo_model, gl_renderer, tmp_path, caplog) -> None:
    tiny = AlignConfig(templates=TemplateConfig(subdivisions=1, image_px=96, points_per_view=50))
    refiner = Refiner(RefinerNet(ModelConfig.lite(crop_size=64)), device="cpu", renderer=gl_renderer,
                      align_config=tiny, align_cache_dir=tmp_path)  # fmt: skip
    refiner.add_object("a", demo_model)
    with caplog.at_level(logging.INFO):
        assert refiner.prepare_alignment() == ["a"]
        assert refiner.prepare_alignment() == []
    with pytest.raises(ValueError, match="unknown object_id 'b'"):
        refiner.prepare_alignment(["b"])
    second = Refiner(RefinerNet(ModelConfig.lite(crop_size=64)), device="cpu", renderer=gl_renderer,
                     align_config=tiny, align_cache_dir=tmp_path)  # fmt: skip
    second.add_object("a", demo_model)
    assert second.prepare_alignment() == []  # from the cache


def test_outline_energy_is_lowest_at_the_true_pose(demo_scenes, demo_templates) -> None:
    # The guard's measure: the true pose's outline separates the image's colours better than poses a few
    # degrees or a few pixels off; an object off the image has no measure (inf).
    for case in demo_scenes[:3]:
        true = outline_energy(case.image, case.K, case.T_gt, demo_templates, CONFIG)
        for name in ("ry", "tx", "tz"):
            moved = _offset(case.T_gt, **OFFSETS[name])
            assert true + 1.0 < outline_energy(case.image, case.K, moved, demo_templates, CONFIG)
    gone = demo_scenes[0].T_gt.copy()
    gone[0, 3] += 5.0
    assert outline_energy(demo_scenes[0].image, demo_scenes[0].K, gone, demo_templates) == np.inf


def test_guard_rejects_an_aligned_outline_that_does_not_fit(identity_refiner, demo_scenes) -> None:
    case = demo_scenes[1]
    start = _offset(case.T_gt, **OFFSETS["all"])
    fits = identity_refiner.refine(case.image, case.K, [("drill", start)], stages=0, align=True)[0]
    assert fits.guard is None and fits.align_fit_energy < AgreementConfig().max_align_energy
    # On noise the alignment runs to the end, but its outline separates nothing: not passed on.
    noise = np.random.default_rng(0).integers(0, 256, case.image.shape, dtype=np.uint8)
    lost = identity_refiner.refine(noise, case.K, [("drill", start)], stages=0, align=True)[0]
    assert lost.align_error is None and lost.align_fit_energy > AgreementConfig().max_align_energy
    assert lost.guard.startswith("guard: the aligned outline") and not lost.converged
    # The threshold is the guard's setting; without the guard nothing is judged.
    identity_refiner.agreement_config = AgreementConfig(max_align_energy=10.0)
    try:
        lenient = identity_refiner.refine(noise, case.K, [("drill", start)], stages=0, align=True)
        assert lenient[0].guard is None
    finally:
        identity_refiner.agreement_config = AgreementConfig()
    off = identity_refiner.refine(
        noise, case.K, [("drill", start)], stages=0, align=True, guard=False
    )
    assert off[0].guard is None and off[0].align_fit_energy == pytest.approx(lost.align_fit_energy)
