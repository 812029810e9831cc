"""Training diagnostics: do the rotation and depth heads see what they regress? (`python -m
attn6d_ros.tools.probe`)

Rotation, on fresh training samples at full difficulty (non-symmetric objects only):
- the spread over the samples of the predicted rotation (quaternion vector parts) against that of the targets:
  a head whose output no longer depends on its input has collapsed to a constant;
- how much of the target rotation a ridge regression can read off the rotation head's pooled features
  (held-out R² per camera axis): about 0 or below means the features carry no rotation at all, so no
  readout could learn it from them.

Depth, a controlled experiment on the same kind of samples (all objects): the render is made at the true pose
and again with only the depth changed by a known percentage (the object moved along its viewing ray), and the
change of the depth output is compared with the change that would undo it. A response ratio of 1 corrects the
error in one stage; well below 1 is a head that under-corrects (it cannot resolve that change of scale).

Depth against alignment: the same with the render also turned by a known angle (5, 10, 20 degrees about a
random axis), as before the rotation has converged. Per angle, the response ratio, the spread of the output
over the samples at the right depth, and their quotient as a precision: the depth error, in per cent of the
distance, at which the head's output stops moving (the per-scene error a converged refinement keeps, whatever
the gain).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import torch

from attn6d_ros.checkpoint import load_checkpoint
from attn6d_ros.crop import crop_intrinsics
from attn6d_ros.crop_render import render_into_crops
from attn6d_ros.geometry import axis_angle_to_matrix, moved_along_ray
from attn6d_ros.network import (
    DEPTH_OUTPUT_DIVISOR,
    normalize_crop,
    rotvec_to_quat_xyzw_torch,
    unit_quat_xyzw_torch,
    update_targets,
)
from attn6d_ros.objects import load_objects
from attn6d_ros.paths import resolve_path
from attn6d_ros.synth import SceneGenerator, SynthConfig, TrainingSample
from attn6d_ros.training_batch import collate_samples

RIDGE_LAMBDA = 100.0  # on standardised features
HELD_OUT_SHARE = 0.3
DEPTH_ERRORS_PCT = (-4.0, -2.0, -1.0, 1.0, 2.0, 4.0)  # of the distance; DeepIM noise is about 5 %
# Rotations of the render for the alignment part, degrees (after 4 stages the median error is about 5).
MISALIGNMENTS_DEG = (0.0, 5.0, 10.0, 20.0)
ALIGNMENT_ERROR_PCT = 3.0


def rotation_probe(
    net: torch.nn.Module, generator: SceneGenerator, samples: int, seed: int = 4242
) -> dict:
    """Runs the first stage on `samples` training samples and returns the two diagnostics (see module)."""
    if samples < 20:
        raise ValueError(f"samples must be >= 20 for a held-out split, got {samples}")
    net = net.eval()
    stage = net.stage(0)
    symmetric = np.array([model.symmetric for model in generator.objects])
    features, predicted, targets = [], [], []
    # The rotation head's pooled features are its regressor's input.
    hook = stage.heads[2].regressor.register_forward_hook(
        lambda _module, inputs, _output: features.append(inputs[0].numpy())
    )
    for start in range(0, samples, 50):
        chunk = [
            generator.training_sample(seed, i) for i in range(start, min(start + 50, samples))
        ]
        chunk = [s for s in chunk if not symmetric[s.object_index]]
        if not chunk:
            continue
        batch = collate_samples(chunk)
        image, render = normalize_crop(batch.image), normalize_crop(batch.render)
        with torch.no_grad():
            out = stage(image, render)
            T, T_gt = batch.T_cur, batch.T_gt
            _, _, rotvec = update_targets(T[:, :3, :3], T[:, :3, 3], T_gt[:, :3, :3],
                                          T_gt[:, :3, 3], batch.K, batch.zoom)  # fmt: skip
        predicted.append(unit_quat_xyzw_torch(out.quat_xyzw)[:, :3].numpy())
        targets.append(rotvec_to_quat_xyzw_torch(rotvec)[:, :3].numpy())
    hook.remove()
    X, P, Y = (np.concatenate(a).astype(np.float64) for a in (features, predicted, targets))
    return {
        "samples": len(Y),
        "predicted_spread": P.std(axis=0).round(6).tolist(),
        "target_spread": Y.std(axis=0).round(6).tolist(),
        "feature_r2": _ridge_r2(X, Y).round(3).tolist(),
    }


def depth_probe(
    net: torch.nn.Module,
    generator: SceneGenerator,
    samples: int,
    seed: int = 4242,
    errors_pct: tuple[float, ...] = DEPTH_ERRORS_PCT,
) -> dict:
    """The first stage's depth response to known depth errors on `samples` training samples (see module).

    For each sample the observed crop is kept and the render is made at the true pose and at the true pose
    with its translation scaled by 1 + e/100. Returns, per error e (per cent of the distance): the depth
    output that would undo it (paper units, 1/3000 of log depth), the mean change of the output against the
    render at the truth, and their ratio; and the spread of the output at the truth (paper units).
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if not errors_pct or any(not -50.0 < e < 50.0 or e == 0.0 for e in errors_pct):
        raise ValueError(
            f"errors_pct must be non-zero and within (-50, 50) per cent, got {errors_pct}"
        )
    net = net.eval()
    at_truth, changes = [], []
    for i in range(samples):
        sample = generator.training_sample(seed, i)
        T_gt = sample.T_gt
        poses = [T_gt] + [moved_along_ray(T_gt, 1.0 + e / 100.0) for e in errors_pct]
        dz = _depth_outputs(net, generator, sample, poses)
        at_truth.append(dz[0])
        changes.append(dz[1:] - dz[0])
    target = -DEPTH_OUTPUT_DIVISOR * np.log1p(np.asarray(errors_pct) / 100.0)
    response = np.mean(changes, axis=0)
    return {
        "samples": samples,
        "depth_error_pct": list(errors_pct),
        "target_dz": target.round(1).tolist(),
        "mean_response_dz": response.round(1).tolist(),
        "response_ratio": (response / target).round(3).tolist(),
        "spread_at_truth_dz": round(float(np.std(at_truth)), 1),
    }


def depth_alignment_probe(
    net: torch.nn.Module,
    generator: SceneGenerator,
    samples: int,
    seed: int = 4242,
    misalignments_deg: tuple[float, ...] = MISALIGNMENTS_DEG,
    error_pct: float = ALIGNMENT_ERROR_PCT,
) -> dict:
    """The first stage's depth response and precision with the render turned off the truth (see module).

    Per sample and angle: the true pose turned by the angle about a random axis, rendered at its depth and
    at depth x (1 + e) and / (1 + e). Returns per angle: response_ratio (half the output's change between the
    two over 3000 log(1 + e)), spread_dz (std over samples of the output at the right depth, paper units) and
    precision_pct (100 x spread over the response per unit of log depth; None where the head does not
    respond).
    """
    if samples < 2:
        raise ValueError(f"samples must be >= 2 for a spread, got {samples}")
    if not 0.0 < error_pct < 50.0:
        raise ValueError(f"error_pct must be within (0, 50) per cent, got {error_pct}")
    if not misalignments_deg or any(not 0.0 <= a <= 90.0 for a in misalignments_deg):
        raise ValueError(f"misalignments_deg must be within [0, 90], got {misalignments_deg}")
    net = net.eval()
    factors = (1.0 / (1.0 + error_pct / 100.0), 1.0, 1.0 + error_pct / 100.0)
    outputs = []  # (samples, angles, 3)
    for i in range(samples):
        sample = generator.training_sample(seed, i)
        rng = np.random.default_rng([seed, i, 2])
        poses = []
        for angle in misalignments_deg:
            axis = rng.normal(size=3)
            turn = axis_angle_to_matrix(axis / np.linalg.norm(axis) * np.radians(angle))
            turned = sample.T_gt.copy()
            turned[:3, :3] = turn @ turned[:3, :3]
            poses += [moved_along_ray(turned, f) for f in factors]
        dz = _depth_outputs(net, generator, sample, poses)
        outputs.append(dz.reshape(len(misalignments_deg), 3))
    out = np.asarray(outputs)
    target = DEPTH_OUTPUT_DIVISOR * np.log1p(error_pct / 100.0)
    ratio = (out[:, :, 0] - out[:, :, 2]).mean(0) / 2.0 / target
    spread = out[:, :, 1].std(0)
    precision = [
        round(float(100.0 * sd / (DEPTH_OUTPUT_DIVISOR * r)), 2) if r > 1e-6 else None
        for sd, r in zip(spread, ratio, strict=True)
    ]
    return {
        "samples": samples,
        "misalignment_deg": list(misalignments_deg),
        "depth_error_pct": error_pct,
        "response_ratio": ratio.round(3).tolist(),
        "spread_dz": spread.round(1).tolist(),
        "precision_pct": precision,
    }


def _depth_outputs(
    net: torch.nn.Module,
    generator: SceneGenerator,
    sample: TrainingSample,
    poses: list[np.ndarray],
) -> np.ndarray:
    """The first stage's depth output (paper units) for the sample's observed crop against a render at each
    of `poses` (4x4 T_cam_obj, metres) in the sample's crop window (that of its T_init)."""
    size = net.cfg.crop_size
    K_crop = crop_intrinsics(sample.K, replace(sample.window, size_px=size))
    model = generator.objects[sample.object_index]
    renders = render_into_crops(generator.renderer, [model] * len(poses), poses,
                                [K_crop] * len(poses), size, torch.device("cpu"))  # fmt: skip
    image = normalize_crop(torch.as_tensor(sample.image[None])).expand(len(poses), -1, -1, -1)
    with torch.no_grad():
        return net.stage(0)(image, renders).dz.double().numpy()


def _ridge_r2(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Held-out R² per target column of a ridge regression fitted on the first 70 % of the rows."""
    split = round(len(X) * (1 - HELD_OUT_SHARE))
    mean, std = X[:split].mean(0), X[:split].std(0) + 1e-6
    A, B = (X[:split] - mean) / std, (X[split:] - mean) / std
    W = np.linalg.solve(A.T @ A + RIDGE_LAMBDA * np.eye(A.shape[1]), A.T @ Y[:split])
    residual = ((B @ W - Y[split:]) ** 2).sum(0)
    return 1 - residual / ((Y[split:] - Y[split:].mean(0)) ** 2).sum(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--objects", default="package://attn6d_ros/config/objects.yaml")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--depth-samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=4242)
    args = parser.parse_args(argv)
    if args.samples < 20:
        parser.error(f"--samples must be >= 20 for a held-out split, got {args.samples}")
    if args.depth_samples < 2:
        parser.error(f"--depth-samples must be >= 2 for a spread, got {args.depth_samples}")
    torch.set_num_threads(1)
    net, _, _ = load_checkpoint(args.checkpoint)
    models = load_objects(resolve_path(args.objects))
    generator = SceneGenerator(list(models.values()), SynthConfig(crop_size=net.cfg.crop_size))
    rotation = rotation_probe(net, generator, args.samples, args.seed)
    depth = depth_probe(net, generator, args.depth_samples, args.seed)
    alignment = depth_alignment_probe(net, generator, args.depth_samples, args.seed)
    print(json.dumps({"rotation": rotation, "depth": depth, "depth_alignment": alignment}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
