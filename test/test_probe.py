"""Training diagnostics: the rotation probe sees a collapsed (constant) rotation head; the depth probe's
response ratio is 1 for a head that reads scale exactly and 0 for one that ignores its input."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import REPO

from attn6d_ros.mesh import load_mesh
from attn6d_ros.network import ModelConfig, RefinerNet
from attn6d_ros.synth import SceneGenerator, SynthConfig
from attn6d_ros.tools.probe import (
    DEPTH_ERRORS_PCT,
    _ridge_r2,
    depth_alignment_probe,
    depth_probe,
    main,
    rotation_probe,
)


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


class _ScaleOracle(torch.nn.Module):
    """A stand-in stage whose depth output reads the render's silhouette area: log depth falls by half the
    log area, so its response to a depth change is exact up to pixelisation."""

    def __init__(self, crop_size: int) -> None:
        super().__init__()
        self.cfg = ModelConfig.lite(crop_size=crop_size, shared_stages=True)

    def stage(self, index: int) -> torch.nn.Module:
        return self

    def forward(self, image: torch.Tensor, render: torch.Tensor) -> SimpleNamespace:
        background = render[:, :, :1, :1]  # the plain render's corner is background
        area = (render - background).abs().amax(dim=1).gt(1e-3).flatten(1).sum(1).double()
        return SimpleNamespace(dz=1500.0 * torch.log(area))


@pytest.fixture(scope="module")
def demo_generator():
    generator = SceneGenerator([load_mesh(REPO / "models" / "demo_object.ply")],
                               SynthConfig(crop_size=96))  # fmt: skip
    yield generator
    generator.renderer.close()


def test_depth_probe_reads_one_for_a_scale_oracle(demo_generator) -> None:
    result = depth_probe(_ScaleOracle(96), demo_generator, samples=4)
    assert result["depth_error_pct"] == list(DEPTH_ERRORS_PCT)
    # Moving the object 4 % further away must be undone by 3000 * log(1 / 1.04) = -117.7 units.
    assert result["target_dz"][-1] == pytest.approx(-117.7, abs=0.1)
    assert np.allclose(result["response_ratio"], 1.0, atol=0.25)  # silhouette pixels, not area


def test_depth_probe_reads_zero_for_an_untrained_head(demo_generator) -> None:
    net = RefinerNet(ModelConfig.lite(crop_size=96, shared_stages=True))
    result = depth_probe(net, demo_generator, samples=2, errors_pct=(-3.0, 3.0))
    assert result["response_ratio"] == [0.0, 0.0]  # zero-initialised output: no change of depth
    assert result["spread_at_truth_dz"] == 0.0
    with pytest.raises(ValueError, match=r"errors_pct must be non-zero.*\(0.0,\)"):
        depth_probe(net, demo_generator, samples=2, errors_pct=(0.0,))
    with pytest.raises(ValueError, match="samples must be >= 1, got 0"):
        depth_probe(net, demo_generator, samples=0)


def test_alignment_probe_reads_one_for_a_scale_oracle_at_any_angle(demo_generator) -> None:
    # The oracle reads the render's silhouette area: turning the render changes the area, but the response
    # is the change between two depths at the same angle, so it stays about 1.
    result = depth_alignment_probe(_ScaleOracle(96), demo_generator, samples=3)
    assert (
        result["misalignment_deg"] == [0.0, 5.0, 10.0, 20.0] and result["depth_error_pct"] == 3.0
    )
    assert np.allclose(result["response_ratio"], 1.0, atol=0.25)
    # It reads absolute area, not a comparison with the image: its output spreads over the samples.
    assert min(result["spread_dz"]) > 10 and all(p > 0 for p in result["precision_pct"])


def test_alignment_probe_of_an_untrained_head_has_no_precision(demo_generator) -> None:
    net = RefinerNet(ModelConfig.lite(crop_size=96, shared_stages=True))
    result = depth_alignment_probe(net, demo_generator, samples=2, misalignments_deg=(0.0, 10.0))
    assert result["response_ratio"] == [0.0, 0.0] and result["precision_pct"] == [None, None]
    with pytest.raises(ValueError, match=r"samples must be >= 2 for a spread, got 1"):
        depth_alignment_probe(net, demo_generator, samples=1)
    with pytest.raises(
        ValueError, match=r"misalignments_deg must be within \[0, 90\], got \(-5.0,\)"
    ):
        depth_alignment_probe(net, demo_generator, samples=2, misalignments_deg=(-5.0,))
    with pytest.raises(ValueError, match=r"error_pct must be within \(0, 50\) per cent, got 0.0"):
        depth_alignment_probe(net, demo_generator, samples=2, error_pct=0.0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--samples", "5"], "--samples must be >= 20 for a held-out split, got 5"),
        (["--depth-samples", "1"], "--depth-samples must be >= 2 for a spread, got 1"),
    ],
)
def test_cli_refuses_bad_sample_counts(arguments: list, message: str, capsys) -> None:
    # Refused before the checkpoint is read: a usage error naming the flag, not a traceback.
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", "unused.pt", *arguments])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
