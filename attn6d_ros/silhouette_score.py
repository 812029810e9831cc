"""How well a rendered silhouette separates the image's colours: the colour model and labelling score
shared by the depth search (depth_search.py) and the region fit (region_fit.py). Ours, not in the paper.

The object's colours are learned from the image itself: a colour histogram inside a reference silhouette
and one outside it, both over a band of pixels near the object's outline, give every colour's posterior
P(object | colour). A candidate silhouette is scored by the mean log posterior of its labelling of that
band (object inside, background outside): higher is better, 0 is a perfect separation.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

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
