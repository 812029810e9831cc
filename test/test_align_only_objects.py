"""Objects without trained weights (issue 27): the object table's `method`, the Refiner's routing of such
objects to the alignment alone with several starts, and the result's `method`."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from attn6d_ros.align import AlignConfig, TemplateConfig, align_pose, load_or_build_templates
from attn6d_ros.geometry import axis_angle_to_matrix
from attn6d_ros.metrics import pose_errors
from attn6d_ros.network import ModelConfig, RefinerNet
from attn6d_ros.objects import ObjectSpec, read_object_table, uses_network
from attn6d_ros.refiner import ALIGN_ONLY_TURN_DEG, Refiner

# Fewer, smaller views than the default (642 instead of 2562, 240 px): quick to build, same method.
SMALL = TemplateConfig(subdivisions=3, image_px=240)


def _turned(T: np.ndarray, rotvec_deg, shift=(0.0, 0.0, 0.0)) -> np.ndarray:
    moved = T.copy()
    moved[:3, :3] = axis_angle_to_matrix(np.radians(rotvec_deg)) @ T[:3, :3]
    moved[:3, 3] += np.asarray(shift) * T[2, 3]
    return moved


def _add_d(model, case, T: np.ndarray) -> float:
    """ADD over the diameter."""
    errors = pose_errors(T, case.T_gt, case.K, model.points, model.diameter, model.symmetric)
    return errors.add_or_add_s / model.diameter


# -- the object table ----------------------------------------------------------------------------------------


def _table(tmp_path: Path, entry: str) -> Path:
    path = tmp_path / "objects.yaml"
    path.write_text(f"mug:\n  mesh: {REPO / 'models' / 'demo_object.ply'}\n{entry}")
    return path


def test_the_table_reads_method_and_names_a_bad_one(tmp_path: Path) -> None:
    assert read_object_table(_table(tmp_path, ""))["mug"].method == "auto"
    assert read_object_table(_table(tmp_path, "  method: align\n"))["mug"].method == "align"
    with pytest.raises(ValueError, match=r"objects\.mug\.method must be one of .* got 'neural'"):
        read_object_table(_table(tmp_path, "  method: neural\n"))


@pytest.mark.parametrize(
    ("method", "trained_on", "expected"),
    [
        ("auto", True, True),
        ("auto", None, True),  # the checkpoint does not say what it was trained on
        ("auto", False, False),
        ("network", False, True),
        ("align", True, False),
    ],
)
def test_uses_network(method: str, trained_on, expected: bool) -> None:
    spec = ObjectSpec("mug", Path("mug.ply"), method=method)
    assert uses_network(spec, trained_on) is expected


def test_trained_on_reads_the_checkpoint_metadata() -> None:
    net = RefinerNet(ModelConfig.lite(crop_size=64))
    trained = Refiner(net, device="cpu", metadata={"objects": {"demo_object": {"diameter": 0.27}}})
    assert trained.trained_on("demo_object") is True and trained.trained_on("ape") is False
    assert Refiner(net, device="cpu").trained_on("ape") is None
    trained.renderer.close()


def test_the_shipped_demo_weights_list_the_demo_object() -> None:
    from attn6d_ros.checkpoint import read_checkpoint

    objects = read_checkpoint(REPO / "models" / "demo_refiner.pt")["metadata"]["objects"]
    assert "demo_object" in objects and "ape" not in objects


# -- the Refiner ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("align_cache")


@pytest.fixture(scope="module")
def refiner(demo_model, cache_dir) -> Refiner:
    """An untrained network (its output layers are zero: the identity update) with 'known' refined by the
    network and 'new', the same mesh, without trained weights."""
    r = Refiner(RefinerNet(ModelConfig.lite(crop_size=64)), device="cpu",
                align_config=AlignConfig(templates=SMALL),
                align_only_config=AlignConfig(templates=SMALL, start_turn_deg=ALIGN_ONLY_TURN_DEG),
                align_cache_dir=cache_dir)  # fmt: skip
    r.add_object("known", demo_model)
    r.add_object("new", demo_model, network=False)
    yield r
    r.renderer.close()


def test_an_object_without_weights_is_refined_by_the_alignment_alone(
    refiner, demo_model, demo_scenes
) -> None:
    assert refiner.align_only == {"new"}
    # A DeepIM-sized error: 12 degrees and 1 / 1 / 4 cm at 0.6-1 m.
    errors_before, errors_after = [], []
    for case in demo_scenes[:4]:
        start = _turned(case.T_gt, (9.0, -6.0, 5.0), shift=(0.012, -0.01, 0.05))
        (result,) = refiner.refine(case.image, case.K, [("new", start)])
        assert result.ok and result.method == "align" and result.stage_poses == []
        assert result.align_error is None and result.align_motion_m > 0
        assert refiner.last_timings_ms["network"] == 0.0 and refiner.last_timings_ms["align"] > 0
        errors_before.append(_add_d(demo_model, case, start))
        errors_after.append(_add_d(demo_model, case, result.T))
    assert np.mean(np.array(errors_before) < 0.1) <= 0.25, errors_before
    assert np.mean(np.array(errors_after) < 0.1) >= 0.75, (errors_before, errors_after)


def test_it_uses_the_align_only_settings_and_ignores_stages_and_align(
    refiner, demo_scenes
) -> None:
    case = demo_scenes[1]
    start = _turned(case.T_gt, (0.0, 8.0, -6.0), shift=(0.005, 0.0, 0.02))
    templates = load_or_build_templates(
        refiner.models["new"], SMALL, cache_dir=refiner.align_cache_dir
    )[0]
    expected = align_pose(case.image, case.K, start, templates, refiner.align_only_config)
    for kwargs in ({}, {"stages": 2}, {"align": True}, {"stages": 0, "align": True}):
        (result,) = refiner.refine(case.image, case.K, [("new", start)], **kwargs)
        np.testing.assert_allclose(result.T, expected.T, atol=1e-9, err_msg=str(kwargs))
        assert result.method == "align"
    # A call's own alignment settings win (tracking: one start from the last pose).
    one_start = dataclasses.replace(refiner.align_only_config, start_turn_deg=0.0)
    single = align_pose(case.image, case.K, start, templates, one_start)
    (result,) = refiner.refine(case.image, case.K, [("new", start)], align_config=one_start)
    np.testing.assert_allclose(result.T, single.T, atol=1e-9)


def test_network_and_align_only_objects_in_one_call(refiner, demo_scenes) -> None:
    case = demo_scenes[2]
    start = _turned(case.T_gt, (4.0, 0.0, 0.0))
    known, new, again = refiner.refine(
        case.image, case.K, [("known", start), ("new", start), ("known", start)], stages=2
    )
    assert (known.object_id, new.object_id, again.object_id) == ("known", "new", "known")
    assert known.method == again.method == "network" and len(known.stage_poses) == 2
    assert new.method == "align" and new.stage_poses == [] and new.align_lines > 0
    assert known.align_lines is None
    (aligned,) = refiner.refine(case.image, case.K, [("known", start)], align=True)
    assert aligned.method == "network+align" and len(aligned.stage_poses) == 4
    (nothing,) = refiner.refine(case.image, case.K, [("known", start)], stages=0)
    assert nothing.method == "none"
    (bad,) = refiner.refine(case.image, case.K, [("new", np.full((4, 4), np.nan))])
    assert not bad.ok and bad.method == ""


def test_re_adding_an_object_with_weights_routes_it_to_the_network(demo_model, cache_dir) -> None:
    r = Refiner(RefinerNet(ModelConfig.lite(crop_size=64)), device="cpu",
                align_config=AlignConfig(templates=SMALL), align_cache_dir=cache_dir)  # fmt: skip
    r.add_object("mug", demo_model, network=False)
    assert r.align_only == {"mug"}
    r.add_object("mug", demo_model)
    assert r.align_only == set()
    r.renderer.close()


def test_a_failed_alignment_of_an_object_without_weights_is_an_error(refiner, demo_scenes) -> None:
    case = demo_scenes[0]
    # Half the object off the image's right edge and the image's colours uniform: too few lines.
    grey = np.full_like(case.image, 128)
    T = case.T_gt.copy()
    T[0, 3] = (639 - case.K[0, 2]) / case.K[0, 0] * T[2, 3] + 0.6 * 0.266
    (result,) = refiner.refine(grey, case.K, [("new", T)])
    assert not result.ok and "alignment failed" in result.error and result.align_error
    assert result.method == "align"
    np.testing.assert_allclose(result.T, T)
