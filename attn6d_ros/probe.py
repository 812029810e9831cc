"""Training diagnostics: does a refiner's rotation head see rotation? (`python -m attn6d_ros.probe`)

Two numbers on fresh training samples at full difficulty (non-symmetric objects only):
- the spread over the samples of the predicted rotation (quaternion vector parts) against that of the targets:
  a head whose output no longer depends on its input has collapsed to a constant;
- how much of the target rotation a ridge regression can read off the rotation head's pooled features
  (held-out R² per camera axis): about 0 or below means the features carry no rotation at all, so no
  readout could learn it from them.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from attn6d_ros.checkpoint import load_checkpoint
from attn6d_ros.network import (
    normalize_crop,
    rotvec_to_quat_xyzw_torch,
    unit_quat_xyzw_torch,
    update_targets,
)
from attn6d_ros.objects import load_objects
from attn6d_ros.paths import resolve_path
from attn6d_ros.synth import SceneGenerator, SynthConfig

RIDGE_LAMBDA = 100.0  # on standardised features
HELD_OUT_SHARE = 0.3


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
        chunk = [s for s in chunk if not symmetric[s["object_index"]]]
        if not chunk:
            continue
        batch = {k: torch.as_tensor(np.stack([s[k] for s in chunk])) for k in chunk[0]}
        image, render = normalize_crop(batch["image"]), normalize_crop(batch["render"])
        with torch.no_grad():
            out = stage(image, render)
            T, T_gt = batch["T_cur"].float(), batch["T_gt"].float()
            _, _, rotvec = update_targets(T[:, :3, :3], T[:, :3, 3], T_gt[:, :3, :3],
                                          T_gt[:, :3, 3], batch["K"].float(),
                                          batch["zoom"].float())  # fmt: skip
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
    parser.add_argument("--seed", type=int, default=4242)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    net, _, _ = load_checkpoint(args.checkpoint)
    models = load_objects(resolve_path(args.objects))
    generator = SceneGenerator(list(models.values()), SynthConfig(crop_size=net.cfg.crop_size))
    print(json.dumps(rotation_probe(net, generator, args.samples, args.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
