"""The paper's crop: a square window around the projected object origin, resampled to 152x152.

Facts (paper_facts.md §2.1): the window is centred on the projection of the object origin (not on the 2D
box), its half side is 1.4 times r, where r is the largest axis-aligned distance from that centre to a
projected model vertex, it is bilinearly resampled to 152x152 with zeros outside the image, and in the
multi-stage model it is fixed by the *initial* pose for all stages.

Pixel geometry: a window of half side h centred at c covers the continuous image interval [c - h, c + h];
crop pixel i (centre at integer i, as everywhere in this project) covers [i - 0.5, i + 0.5]. Hence
``x_crop = s (x_img - c) + (S - 1) / 2`` with zoom ``s = S / (2h)`` crop pixels per image pixel, and a
renderer given ``crop_intrinsics(K, window)`` draws exactly into the crop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attn6d_ros.geometry import project, transform_points

CROP_SCALE = 1.4  # half side = 1.4 x projected radius (paper)
CROP_SIZE_PX = 152  # output side (paper); 38x38 feature grid after two 2x poolings


@dataclass(frozen=True)
class CropWindow:
    """A square crop window in full-image pixels.

    Attributes:
        center_px: (u, v) window centre, image pixels (the projected object origin).
        half_size_px: half side, image pixels.
        size_px: side of the resampled crop, crop pixels.
    """

    center_px: tuple[float, float]
    half_size_px: float
    size_px: int = CROP_SIZE_PX

    @property
    def zoom(self) -> float:
        """Crop pixels per image pixel (the paper's s0 = 152 / w)."""
        return self.size_px / (2.0 * self.half_size_px)

    @property
    def image_to_crop(self) -> np.ndarray:
        """3x3 matrix mapping homogeneous image pixels to crop pixels."""
        s = self.zoom
        offset = (self.size_px - 1) / 2.0
        return np.array(
            [
                [s, 0.0, offset - s * self.center_px[0]],
                [0.0, s, offset - s * self.center_px[1]],
                [0.0, 0.0, 1.0],
            ]
        )

    def intersects_image(self, width: int, height: int) -> bool:
        """True when any part of the window overlaps the image [-0.5, W - 0.5] x [-0.5, H - 0.5]."""
        u, v = self.center_px
        h = self.half_size_px
        return u + h > -0.5 and u - h < width - 0.5 and v + h > -0.5 and v - h < height - 0.5


@dataclass(frozen=True)
class Crop:
    """A resampled crop and where it came from.

    Attributes:
        image: (S, S, C) float32 crop, in the value range of the input image; zeros outside the image.
        window: the crop window.
    """

    image: np.ndarray
    window: CropWindow

    @property
    def image_to_crop(self) -> np.ndarray:
        """3x3 matrix mapping homogeneous image pixels to crop pixels."""
        return self.window.image_to_crop


def compute_window(
    K: np.ndarray,
    T_cam_obj: np.ndarray,
    points_obj: np.ndarray,
    *,
    scale: float = CROP_SCALE,
    size_px: int = CROP_SIZE_PX,
) -> CropWindow:
    """The paper's window for an object at ``T_cam_obj``.

    Args:
        K: 3x3 intrinsics of the full image.
        T_cam_obj: 4x4 object pose.
        points_obj: (N, 3) model points, metres; the mesh's hull vertices give the same window as all
            vertices (the extremes of a projected convex set are projected extreme points).
        scale: half side over projected radius (paper 1.4).
        size_px: side of the crop (paper 152).

    Raises:
        ValueError: the object origin or any model point is not in front of the camera.
    """
    points_cam = transform_points(T_cam_obj, points_obj)
    z_origin = T_cam_obj[2, 3]
    if z_origin <= 0 or np.any(points_cam[:, 2] <= 1e-6):
        raise ValueError(
            f"object is behind or inside the camera (origin z={z_origin:.3f} m, nearest model point "
            f"z={points_cam[:, 2].min():.3f} m); poses must be in the optical frame, z forward"
        )
    center = project(K, T_cam_obj[None, :3, 3])[0]
    uv = project(K, points_cam)
    radius = float(
        np.max(np.abs(uv - center))
    )  # axis-aligned, as the paper's max(|u - cu|, |v - cv|)
    radius = max(radius, 0.5)  # a degenerate projection still gets a one-pixel window
    return CropWindow(
        center_px=(float(center[0]), float(center[1])),
        half_size_px=scale * radius,
        size_px=size_px,
    )


def crop_intrinsics(K: np.ndarray, window: CropWindow) -> np.ndarray:
    """Intrinsics that render straight into the crop: ``image_to_crop @ K``."""
    return window.image_to_crop @ np.asarray(K, dtype=np.float64)


def crop_image(
    image: np.ndarray,
    window: CropWindow,
    *,
    origin_px: tuple[int, int] = (0, 0),
    full_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Bilinearly resamples the window to (S, S, C) float32, zeros outside the image.

    Args:
        image: (H, W) or (H, W, C) array of any numeric dtype.
        window: the crop window, in full-image pixels.
        origin_px: (u, v) full-image pixel of ``image[0, 0]`` when ``image`` is a part of a larger image
            (synthetic data renders only the window's neighbourhood).
        full_size: (W, H) of the full image when ``image`` is a part of it; pixels outside the full image
            are zero, exactly as for a crop of the full image.
    """
    img = np.asarray(image)
    squeeze = img.ndim == 2
    if squeeze:
        img = img[:, :, None]
    h, w, c = img.shape
    S = window.size_px
    grid = (np.arange(S, dtype=np.float64) - (S - 1) / 2.0) / window.zoom
    xs = grid + window.center_px[0] - origin_px[0]  # image-array coordinates of crop pixel centres
    ys = grid + window.center_px[1] - origin_px[1]
    # Zero padding by one pixel: bilinear weights fade to zero across the image border.
    padded = np.zeros((h + 2, w + 2, c), dtype=np.float32)
    padded[1:-1, 1:-1] = img
    if full_size is not None:
        _zero_outside(padded, origin_px, full_size)
    x0 = np.floor(xs).astype(np.int64)
    y0 = np.floor(ys).astype(np.int64)
    fx = (xs - x0).astype(np.float32)[None, :, None]
    fy = (ys - y0).astype(np.float32)[:, None, None]
    # Indices into the padded array, clipped into the zero border when far outside.
    xi0 = np.clip(x0 + 1, 0, w + 1)
    xi1 = np.clip(x0 + 2, 0, w + 1)
    yi0 = np.clip(y0 + 1, 0, h + 1)[:, None]
    yi1 = np.clip(y0 + 2, 0, h + 1)[:, None]
    top = padded[yi0, xi0] * (1 - fx) + padded[yi0, xi1] * fx
    bottom = padded[yi1, xi0] * (1 - fx) + padded[yi1, xi1] * fx
    out = top * (1 - fy) + bottom * fy
    return out[:, :, 0] if squeeze else out


def _zero_outside(
    padded: np.ndarray, origin_px: tuple[int, int], full_size: tuple[int, int]
) -> None:
    """Zeros the pixels of a padded partial image that lie outside the full image."""
    h, w = padded.shape[0] - 2, padded.shape[1] - 2
    u0, v0 = origin_px
    width, height = full_size
    cols = np.arange(w) + u0
    rows = np.arange(h) + v0
    padded[1:-1, 1:-1][:, (cols < 0) | (cols >= width)] = 0
    padded[1:-1, 1:-1][(rows < 0) | (rows >= height)] = 0


def crop_object(
    image: np.ndarray,
    K: np.ndarray,
    T_cam_obj: np.ndarray,
    points_obj: np.ndarray,
    *,
    scale: float = CROP_SCALE,
    size_px: int = CROP_SIZE_PX,
) -> Crop:
    """The paper's crop of ``image`` around an object at ``T_cam_obj`` (see compute_window)."""
    window = compute_window(K, T_cam_obj, points_obj, scale=scale, size_px=size_px)
    return Crop(image=crop_image(image, window), window=window)
