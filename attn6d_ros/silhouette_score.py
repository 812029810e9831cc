"""How well a rendered silhouette separates the image's colours: the colour model and labelling score
shared by the depth search (depth_search.py) and the region fit (region_fit.py). Ours, not in the paper.

The object's colours are learned from the image itself: a colour histogram inside a reference silhouette
and one outside it, both over a band of pixels near the object's outline, give every colour's posterior
P(object | colour). A candidate silhouette is scored by the mean log posterior of its labelling of that
band (object inside, background outside): higher is better, 0 is a perfect separation.

`scan_along_ray` is the first step of both searches: crop the image around a pose, render its silhouette
at distances along the viewing ray (also of further start poses, for the region fit's extra starts) and learn
the colour model at the pose's own distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from attn6d_ros.crop import CROP_SCALE, compute_window, crop_image, crop_intrinsics
from attn6d_ros.geometry import moved_along_ray
from attn6d_ros.mesh import ObjectModel
from attn6d_ros.render import Renderer

MIN_BAND_PIXELS = 20  # fewer labelled pixels on either side of the reference: no colour model


def render_silhouettes(
    renderer: Renderer,
    model: ObjectModel,
    poses: list[np.ndarray],
    K_crop: np.ndarray,
    size_px: int,
) -> np.ndarray:
    """(N, S, S) bool masks of the object at each (4, 4) pose, in a crop with intrinsics ``K_crop``."""
    return renderer.render_masks([(model, T, K_crop) for T in poses], size_px, size_px)


def ray_silhouettes(
    renderer: Renderer,
    model: ObjectModel,
    T_cam_obj: np.ndarray,
    K_crop: np.ndarray,
    size_px: int,
    log_factors: np.ndarray,
) -> np.ndarray:
    """(N, S, S) bool masks of the object moved along its viewing ray by exp(each log factor)."""
    poses = [moved_along_ray(T_cam_obj, float(np.exp(x))) for x in log_factors]
    return render_silhouettes(renderer, model, poses, K_crop, size_px)


@dataclass(frozen=True)
class RayScan:
    """Silhouettes of a pose moved along its viewing ray, and the colour model learned at its own distance.

    Attributes:
        K_crop: (3, 3) intrinsics of the crop (the paper's window around the pose, ``size_px`` square).
        log_factors: (N,) the scanned log distance factors, odd N; the middle one is 0 (the pose itself).
        masks: (M * N, S, S) bool silhouettes at those distances, for the pose and then for each of the
            M - 1 further start poses scanned with it (M = 1 without them).
        band: (S, S) bool the compared pixels (``outline_band`` of all the masks).
        posterior: P(object | colour) of every band pixel, learned from the pose's own silhouette; None when
            either side of it has too few band pixels.
    """

    K_crop: np.ndarray
    log_factors: np.ndarray
    masks: np.ndarray
    band: np.ndarray
    posterior: np.ndarray | None

    @property
    def centre(self) -> int:
        """Index of the pose's own distance."""
        return len(self.log_factors) // 2

    def start_masks(self, start: int) -> np.ndarray:
        """(N, S, S) the silhouettes along the ray of start ``start`` (0: the pose itself)."""
        n = len(self.log_factors)
        return self.masks[start * n : (start + 1) * n]

    def score(self, mask: np.ndarray) -> float:
        """Labelling score of an (S, S) silhouette over the band (needs a posterior)."""
        return labelling_score(self.posterior, mask[self.band])


def scan_along_ray(
    image: np.ndarray,
    K: np.ndarray,
    T_cam_obj: np.ndarray,
    model: ObjectModel,
    renderer: Renderer,
    *,
    range_fraction: float,
    steps: int,
    size_px: int,
    colour_bins: int,
    band_px: int,
    other_starts: list[np.ndarray] | None = None,
) -> RayScan:
    """Crops ``image`` around the pose (``size_px`` pixels), renders the silhouette at ``steps`` (odd)
    distances from exp(-range_fraction) to exp(+range_fraction) times the pose's own (1 step: the pose
    only), the same for each pose of ``other_starts`` (in the same crop), and learns the colour model at
    the pose's own distance over the band of all of them.

    Raises:
        ValueError: the pose puts the object behind the camera (from crop.compute_window).
    """
    window = compute_window(K, T_cam_obj, model.hull_vertices, scale=CROP_SCALE, size_px=size_px)
    K_crop = crop_intrinsics(K, window)
    codes = colour_codes(crop_image(np.asarray(image, dtype=np.float32), window), colour_bins)
    log_factors = np.linspace(-range_fraction, range_fraction, steps) if steps > 1 else np.zeros(1)
    masks = np.concatenate([ray_silhouettes(renderer, model, T, K_crop, size_px, log_factors)
                            for T in [T_cam_obj, *(other_starts or [])]])  # fmt: skip
    band = outline_band(masks, band_px)
    posterior = colour_posterior(codes, masks[len(log_factors) // 2], band, colour_bins)
    return RayScan(K_crop, log_factors, masks, band, posterior)


def outline_band(masks: np.ndarray, band_px: int) -> np.ndarray:
    """(S, S) bool: the pixels some mask of ``masks`` (N, S, S) claims and some leaves out, widened by
    ``band_px`` pixels on both sides."""
    band = ndimage.binary_dilation(np.any(masks, axis=0), iterations=band_px)
    return band & ~ndimage.binary_erosion(np.all(masks, axis=0), iterations=band_px)


def colour_codes(crop: np.ndarray, bins: int) -> np.ndarray:
    """(S, S) int histogram bin of every pixel's RGB colour (0..255 per channel)."""
    q = np.clip((crop * (bins / 256.0)).astype(np.int64), 0, bins - 1)
    return (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]


def colour_posterior(
    codes: np.ndarray, mask: np.ndarray, band: np.ndarray, bins: int
) -> np.ndarray | None:
    """P(object | colour) of every band pixel, from the band's colours inside and outside `mask`
    (histograms with one pseudo-count per bin); None when either side has too few pixels."""
    inside, outside = codes[mask & band], codes[band & ~mask]
    if len(inside) < MIN_BAND_PIXELS or len(outside) < MIN_BAND_PIXELS:
        return None
    p_object = np.bincount(inside, minlength=bins**3) + 1.0
    p_background = np.bincount(outside, minlength=bins**3) + 1.0
    p_object /= p_object.sum()
    p_background /= p_background.sum()
    return (p_object / (p_object + p_background))[codes[band]]


def labelling_score(posterior: np.ndarray, inside: np.ndarray) -> float:
    """Mean log probability of labelling the band's pixels object where `inside`, background elsewhere."""
    return float(np.mean(np.log(np.where(inside, posterior, 1.0 - posterior))))
