"""Network input rendered at poses into crop windows: render, stack, normalise (refiner stages and training).

The refiner renders each detection at its current pose into the crop window fixed by its coarse pose before
every stage; unrolled training does the same between stages. Both go through `render_into_crops`, so the
network sees the same kind of render at run time as in training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from attn6d_ros.mesh import ObjectModel
from attn6d_ros.network import normalize_crop
from attn6d_ros.render import Renderer


def render_into_crops(
    renderer: Renderer,
    models: Sequence[ObjectModel],
    poses: Sequence[np.ndarray],
    crop_Ks: Sequence[np.ndarray],
    size_px: int,
    device: torch.device,
) -> torch.Tensor:
    """Renders each model (unlit) at its pose into its crop: the network's render input.

    Args:
        renderer: the renderer to draw with (one batched render).
        models: the objects, one per crop.
        poses: (4, 4) T_cam_obj per crop, metres.
        crop_Ks: (3, 3) intrinsics that draw straight into each crop (crop.crop_intrinsics).
        size_px: the crops' side, pixels.
        device: where the result goes.

    Returns:
        (B, 3, S, S) float32 in [-0.5, 0.5] (network.normalize_crop), channels_last, on `device`.
    """
    items = [(m, T, Kc) for m, T, Kc in zip(models, poses, crop_Ks, strict=True)]
    renders = renderer.render_batch(items, size_px, size_px)
    rgb = torch.from_numpy(np.stack([r.rgb for r in renders])).to(device)  # (B, S, S, 3) uint8
    return normalize_crop(rgb).contiguous(memory_format=torch.channels_last)


def poses_from_tensors(R: torch.Tensor, t: torch.Tensor) -> list[np.ndarray]:
    """(B, 3, 3) rotations and (B, 3) translations (metres; any float dtype and device) -> B (4, 4) float64
    T_cam_obj arrays."""
    R = R.detach().double().cpu().numpy()
    t = t.detach().double().cpu().numpy()
    poses = []
    for j in range(R.shape[0]):
        T = np.eye(4)
        T[:3, :3] = R[j]
        T[:3, 3] = t[j]
        poses.append(T)
    return poses
