"""How well poses agree with an image, judged by the image's own colours, and the guard built on it: a
refinement that agrees less with the image than its coarse pose is never passed on as refined.

Agreement of a pose: render its silhouette into a window around the object, learn a colour histogram of the
pixels just inside its outline and one of the pixels just outside (a band of `band_px` on both sides), and
measure how well the silhouette explains the colours of that band: 1 + mean log2 P(label | colour), where
label is inside/outside. 1: the outline separates two sets of colours perfectly; 0: the colours say nothing
about the outline (as for a silhouette placed on a uniform region or across the object). Because the
colours are learned from the image itself, a white-balance cast, another exposure or a texture that is not
the mesh's do not change it, unlike a comparison of the render's colours with the image (the refiner's
`score`). Both poses of a detection are judged in the same window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from attn6d_ros.crop import CROP_SCALE, compute_window, crop_image, crop_intrinsics
from attn6d_ros.mesh import ObjectModel
from attn6d_ros.render import Renderer

# Fewer band pixels on either side of a silhouette: no colour model, agreement 0.
MIN_BAND_PIXELS = 20
# A refined pose scoring below this is not trusted: the node's default min_score, attn6d-eval's "published".
DEFAULT_MIN_SCORE = 0.2


@dataclass(frozen=True)
class AgreementConfig:
    """Settings of the agreement measure and the guard."""

    size_px: int = 128  # side of the judging window, pixels
    window_scale: float = (
        1.25  # the window's half side, times the refiner's crop window (CROP_SCALE)
    )
    band_px: int = 6  # pixels on each side of the outline
    colour_bins: int = 8  # per channel
    # The guard trips when the refined pose's agreement is below the coarse pose's minus this margin.
    guard_margin: float = 0.0
    # ... or, when the alignment ran, when its final outline fits the image worse than this
    # (align.outline_energy). 2.2 lies between the medians of right (1.8) and wrong (2.5) aligned poses on
    # the shifted validation scenes (seed 77, 100 scenes; docs/experiments.md); inf: off.
    max_align_energy: float = 2.2

    def __post_init__(self) -> None:
        if self.size_px < 32 or self.band_px < 1 or self.colour_bins < 2 or self.window_scale <= 0:
            raise ValueError(f"AgreementConfig out of range: {self}")
        if not 0.0 <= self.guard_margin < 1.0:
            raise ValueError(f"guard_margin must be in [0, 1), got {self.guard_margin}")
        if not self.max_align_energy > 0.0:
            raise ValueError(f"max_align_energy must be > 0, got {self.max_align_energy}")


def silhouette_agreement(
    image: np.ndarray,
    K: np.ndarray,
    poses: list[np.ndarray],
    model: ObjectModel,
    renderer: Renderer,
    cfg: AgreementConfig | None = None,
) -> np.ndarray:
    """(N,) agreement in [0, 1] of each (4, 4) pose `T_cam_obj` with `image` (module docstring), all judged
    in the window around the first pose. A pose whose silhouette leaves too few band pixels on either side
    (outside the window, or too small) gets 0.

    Raises:
        ValueError: the first pose puts the object behind the camera (no window).
    """
    cfg = cfg or AgreementConfig()
    window = compute_window(
        K, poses[0], model.hull_vertices, scale=CROP_SCALE * cfg.window_scale, size_px=cfg.size_px
    )
    K_crop = crop_intrinsics(K, window)
    codes = colour_codes(crop_image(np.asarray(image, dtype=np.float32), window), cfg.colour_bins)
    masks = renderer.render_masks([(model, T, K_crop) for T in poses], cfg.size_px, cfg.size_px)
    out = np.zeros(len(poses))
    for i, mask in enumerate(masks):
        band = outline_band(mask[None], cfg.band_px)
        posterior = colour_posterior(codes, mask, band, cfg.colour_bins)
        if posterior is not None:
            bits = labelling_score(posterior, mask[band]) / np.log(2.0)
            out[i] = float(np.clip(1.0 + bits, 0.0, 1.0))
    return out


def outline_band(masks: np.ndarray, band_px: int) -> np.ndarray:
    """(S, S) bool: the pixels some mask of ``masks`` (N, S, S) claims and some leaves out, widened by
    ``band_px`` pixels on both sides."""
    band = ndimage.binary_dilation(np.any(masks, axis=0), iterations=band_px)
    return band & ~ndimage.binary_erosion(np.all(masks, axis=0), iterations=band_px)


def colour_codes(crop: np.ndarray, bins: int) -> np.ndarray:
    """(S, S) int histogram bin of every pixel's RGB colour (0..255 per channel, ``bins`` per channel)."""
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
    """Mean log probability (natural log) of labelling the band's pixels object where `inside`,
    background elsewhere; 0 is a perfect separation."""
    return float(np.mean(np.log(np.where(inside, posterior, 1.0 - posterior))))


def align_fit_verdict(fit_energy: float | None, max_energy: float) -> str | None:
    """None when no alignment ran (``fit_energy`` None) or its final outline fits the image (energy at
    most ``max_energy``); otherwise why the pose must not be passed on as refined."""
    if fit_energy is None or fit_energy <= max_energy:
        return None
    return (
        f"guard: the aligned outline does not fit the image's colours (outline energy "
        f"{fit_energy:.2f} > max_align_energy {max_energy:.2f})"
    )


def guard_verdict(agreement_init: float, agreement: float, margin: float) -> str | None:
    """None when the refined pose agrees with the image at least as well as the coarse one (within
    `margin`); otherwise why the refinement must not be passed on as refined."""
    if agreement >= agreement_init - margin:
        return None
    return (
        f"guard: the refined pose agrees less with the image than the coarse pose (agreement "
        f"{agreement:.3f} < {agreement_init:.3f})"
    )
