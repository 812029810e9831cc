"""The shifted test set: reproducible, correctly annotated, and really different from the training generator
(other renderer and code, colours outside the training ranges, photographs never used in training)."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

import attn6d_ros.synth as synth_module
from attn6d_ros.photos import TEST_PHOTOS, TRAIN_PHOTOS, load_photo
from attn6d_ros.shifted_scenes import ShiftedConfig, ShiftedSceneGenerator, shifted_cases
from attn6d_ros.synth import SceneGenerator, SynthConfig


@pytest.fixture(scope="module")
def scenes(demo_model) -> list:
    with ShiftedSceneGenerator([demo_model]) as generator:
        return [generator.scene(5, i) for i in range(12)]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    return names


def test_made_by_other_code_than_the_training_data() -> None:
    imported = _imports(REPO / "attn6d_ros" / "shifted_scenes.py")
    assert "pyrender" in imported
    for training_code in ("attn6d_ros.synth", "attn6d_ros.render", "attn6d_ros.render.moderngl_backend",
                          "attn6d_ros.crop"):  # fmt: skip
        assert training_code not in imported


@pytest.mark.slow
def test_photographs_of_the_test_set_are_never_used_in_training(monkeypatch) -> None:
    assert not set(TRAIN_PHOTOS) & set(TEST_PHOTOS)

    # No training photograph is a copy (or a resized copy) of a test photograph.
    def thumbnail(name: str) -> np.ndarray:
        from PIL import Image

        small = np.asarray(Image.fromarray(load_photo(name)).resize((32, 32)), np.float64)
        return (small - small.mean()) / (small.std() + 1e-9)

    for test_name in TEST_PHOTOS:
        for train_name in TRAIN_PHOTOS:
            assert np.mean(thumbnail(test_name) * thumbnail(train_name)) < 0.9, (
                test_name,
                train_name,
            )
    # The training generator loads training photographs only.
    loaded = []
    real_load = synth_module.load_photo

    def recording_load(name: str) -> np.ndarray:
        loaded.append(name)
        return real_load(name)

    monkeypatch.setattr(synth_module, "load_photo", recording_load)
    from attn6d_ros.mesh import load_mesh

    generator = SceneGenerator([load_mesh(REPO / "models" / "demo_object.ply")],
                               SynthConfig(crop_size=64, broad_appearance=1.0))  # fmt: skip
    for i in range(40):
        generator.training_sample(3, i)
    generator.renderer.close()
    assert loaded and set(loaded) <= set(TRAIN_PHOTOS)


def test_colours_reach_beyond_the_training_ranges(scenes: list) -> None:
    train, test = SynthConfig(), ShiftedConfig()
    assert (
        test.white_balance[0] < train.white_balance[0]
        and test.white_balance[1] > train.white_balance[1]
    )
    assert test.gamma[0] < train.gamma[0] and test.gamma[1] > train.gamma[1]
    assert test.hue_shift_turns > train.object_hue_turns
    balance = np.array([s.settings["white_balance"] for s in scenes])
    outside = (balance < train.white_balance[0]) | (balance > train.white_balance[1])
    assert (
        outside.any(axis=1).mean() > 0.3
    )  # of the scenes have a channel beyond anything trained on


def test_reproducible_and_seeded(demo_model) -> None:
    with ShiftedSceneGenerator([demo_model]) as generator:
        a, b, c = generator.scene(5, 1), generator.scene(5, 1), generator.scene(6, 1)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.T_init, b.T_init)
    assert not np.array_equal(a.image, c.image)
    assert a.image.dtype == np.uint8 and a.image.shape == (480, 640, 3)


def test_annotation_matches_the_object_in_the_image(demo_model, gl_renderer) -> None:
    """pyrender's render of the object at T_gt covers the same pixels as our renderer's (camera conventions
    and the supersampling's pixel centres agree)."""
    rng = np.random.default_rng(0)
    with ShiftedSceneGenerator([demo_model]) as generator:
        K = generator._camera(rng)
        T = generator._pose(rng, demo_model, K)
        _, coverage = generator._render_object(rng, demo_model, T, K, {})
    ours = gl_renderer.render(demo_model, T, K, 640, 480).mask
    theirs = coverage > 0.5
    iou = (ours & theirs).sum() / (ours | theirs).sum()
    assert iou > 0.97


def test_initial_poses_follow_the_deepim_protocol(scenes: list) -> None:
    from attn6d_ros.geometry import rotation_error_deg

    angles = [float(rotation_error_deg(s.T_init, s.T_gt)) for s in scenes]
    depth = [abs(s.T_init[2, 3] - s.T_gt[2, 3]) for s in scenes]
    assert 5.0 < np.median(angles) < 45.0 and max(angles) <= 45.0 + 1e-6
    assert 0.005 < np.median(depth) < 0.15


def test_a_third_are_occluded_within_the_range(demo_model) -> None:
    with ShiftedSceneGenerator([demo_model]) as generator:
        occlusion = np.array([generator.scene(8, i).occlusion for i in range(24)])
    occluded = occlusion[occlusion > 0]
    assert 3 <= len(occluded) <= 15
    assert occluded.min() >= 0.05 and occluded.max() <= 0.6


@pytest.mark.slow
def test_eval_cli_reports_the_shifted_domain(tmp_path: Path) -> None:
    import subprocess
    import sys

    eval_cli = [sys.executable, "-m", "attn6d_ros.evaluate"]
    out = subprocess.run(
        [*eval_cli, "--checkpoint", str(REPO / "models" / "demo_refiner.pt"),
         "--objects", str(REPO / "config" / "objects.yaml"), "--domain", "shifted", "--scenes", "2",
         "--stages", "1"],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    report = json.loads(out.stdout)
    assert report["domain"] == "shifted" and report["cases"] == 2
    assert report["occlusion_range"] is None
    bad = subprocess.run(
        [*eval_cli, "--domain", "shifted", "--occlusion-range", "0.2", "0.6"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "in-domain set only" in bad.stderr


def test_shifted_cases_are_eval_cases(demo_model) -> None:
    cases = shifted_cases({"demo_object": demo_model}, 2, seed=4)
    assert [c.object_id for c in cases] == ["demo_object"] * 2
    assert all(c.image.shape == (480, 640, 3) and c.occlusion is not None for c in cases)
