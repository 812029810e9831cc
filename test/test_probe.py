"""Training diagnostics: the rotation probe sees a collapsed (constant) rotation head."""

from pathlib import Path

import numpy as np
import pytest

from attn6d_ros.mesh import load_mesh
from attn6d_ros.network import ModelConfig, RefinerNet
from attn6d_ros.probe import _ridge_r2, rotation_probe
from attn6d_ros.synth import SceneGenerator, SynthConfig

REPO = Path(__file__).resolve().parents[1]


def test_untrained_head_has_no_spread_and_the_targets_do() -> None:
    generator = SceneGenerator([load_mesh(REPO / "models" / "demo_object.ply")],
                               SynthConfig(crop_size=64))  # fmt: skip
    net = RefinerNet(ModelConfig.lite(crop_size=64, shared_stages=True))
    result = rotation_probe(net, generator, samples=40)
    generator.renderer.close()
    assert result["samples"] == 40
    assert result["predicted_spread"] == [0.0, 0.0, 0.0]  # zero-initialised output: the identity
    assert min(result["target_spread"]) > 0.02  # DeepIM noise: about 0.1 per axis
    assert len(result["feature_r2"]) == 3 and np.isfinite(result["feature_r2"]).all()
    with pytest.raises(ValueError, match="samples must be >= 20"):
        rotation_probe(net, generator, samples=5)


def test_ridge_r2_is_high_for_a_linear_target_and_low_for_noise() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 8))
    linear = X @ rng.normal(size=(8, 2))
    assert (_ridge_r2(X, linear) > 0.9).all()
    assert (_ridge_r2(X, rng.normal(size=(600, 2))) < 0.05).all()
