"""What the renderer and its backends share: clipping planes, the light, a rendered image, a batch's items."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attn6d_ros.mesh import ObjectModel

# What render_batch and render_masks draw, one image per item: (model, T_cam_obj, K) or
# ([(model, T_cam_obj), ...], K).
RenderItems = (
    list[tuple[ObjectModel, np.ndarray, np.ndarray]]
    | list[tuple[list[tuple[ObjectModel, np.ndarray]], np.ndarray]]
)

NEAR = 0.01  # metres; the paper's DIRT renderer clipped at 100 mm, we allow closer objects
FAR = 20.0  # metres


@dataclass(frozen=True)
class Light:
    """Phong lighting for realistic observations (training data); the network input is rendered unlit.

    Attributes:
        direction_cam: (3,) direction from the surface towards the light, camera frame (normalised).
        ambient: ambient term.
        diffuse: diffuse (Lambert) gain.
        specular: specular gain.
        shininess: Phong exponent.
        color: (3,) RGB gain of the light.
    """

    direction_cam: tuple[float, float, float] = (0.0, -0.5, -1.0)
    ambient: float = 0.35
    diffuse: float = 0.75
    specular: float = 0.2
    shininess: float = 16.0
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)


@dataclass
class RenderOutput:
    """A rendered image: rgb (H, W, 3) uint8, depth (H, W) float32 metres (0 = background), mask (H, W) bool,
    and instance (H, W) uint8: 0 background, i + 1 where the i-th object of a scene is visible."""

    rgb: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    instance: np.ndarray
