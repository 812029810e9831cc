"""Correspondence lines of the region-based alignment: the projected contour of a pose, and along each line
through a contour point the probability distribution of where the object's true contour lies (RBGT / SRT3D,
written from the papers' descriptions).

A line starts at the projected contour point and runs along the contour's image normal (outwards positive).
At scale ``s`` its pixels are grouped into segments of ``s`` pixels; each segment's probability of showing
the object is the product of its pixels' colour likelihoods (ColourModel), normalised over object and
background. The contour is then placed at each segment boundary within ``search_segments`` of the line's
centre in turn, and the segments around it (``window_segments`` either side) are explained by smoothed step
functions, h_f(x) = 1/2 - a tanh(x / (2 b)) for the object and h_b = 1 - h_f (x: position relative to the
contour, segments; a: the amplitude, b: the slope): the likelihood of a placement is the product over the
window of h_f P(object) + h_b P(background). Normalised over placements this is the contour's posterior on
the line; its mean and variance feed the Gaussian approximation of the Newton step (solver.py).

Lines count less or not at all where the model cannot speak for them: pixels outside the image, and pixels
beyond the template's foreground / background run lengths (the other side of a thin part, or another part
of the object reappearing outside) are neutral; a line whose centre lies outside the image, or whose runs
are shorter than ``min_run_segments`` segments, is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attn6d_ros.align.histograms import CodeImage, ColourModel
from attn6d_ros.align.templates import ViewTemplates

MIN_DEPTH_M = 0.01  # contour points nearer than this to the camera plane: the pose is unusable


@dataclass(frozen=True)
class Contour:
    """The contour of the template view nearest to a pose, projected with that pose.

    Attributes:
        points_obj: (M, 3) contour points, object frame, metres.
        centres: (M, 2) their projections, pixels (u, v).
        normals: (M, 2) unit outward image normals.
        points_cam: (M, 3) the points in the camera frame.
        foreground_px, background_px: (M,) the template's run lengths at the points' depths, pixels.
        view: index of the template view.
    """

    points_obj: np.ndarray
    centres: np.ndarray
    normals: np.ndarray
    points_cam: np.ndarray
    foreground_px: np.ndarray
    background_px: np.ndarray
    view: int


@dataclass(frozen=True)
class LineFit:
    """Where the lines of a Contour put the object's true contour.

    Attributes:
        contour: the lines' contour (their centres and normals).
        mean_px: (L,) mean of the contour's posterior along each kept line, pixels from its centre
            (outwards positive).
        variance_px2: (L,) its variance, pixels squared.
        weight: (L,) share of each kept line's pixels that carry information (in the image, within runs).
        log_posterior_centre: (L,) log posterior of the contour lying at the line's centre (the pose's own
            contour), for the alignment's energy.
        keep: (M,) bool, which of the contour's lines were kept (L = keep.sum()).
    """

    contour: Contour
    mean_px: np.ndarray
    variance_px2: np.ndarray
    weight: np.ndarray
    log_posterior_centre: np.ndarray
    keep: np.ndarray


def project_contour(
    templates: ViewTemplates, T_cam_obj: np.ndarray, K: np.ndarray
) -> Contour | str:
    """Projects the nearest template view's contour with ``T_cam_obj``; an error string when that view has
    no contour, or the object's origin or a contour point lies behind (or within 1 cm of) the camera
    plane."""
    t = T_cam_obj[:3, 3]
    if not t[2] > MIN_DEPTH_M:
        return f"object origin at z = {t[2]:.3f} m is behind or at the camera (needs z > {MIN_DEPTH_M})"
    view = templates.nearest_view(T_cam_obj)
    valid = templates.valid[view]
    if not valid.any():
        return f"template view {view} has no contour points (an empty silhouette from that side)"
    R = T_cam_obj[:3, :3]
    points_obj = templates.points[view][valid].astype(np.float64)
    points_cam = points_obj @ R.T + t
    z = points_cam[:, 2]
    if not np.all(z > MIN_DEPTH_M):
        return f"part of the object lies behind the camera (nearest contour point z = {z.min():.3f} m)"
    uvw = points_cam @ K.T
    centres = uvw[:, :2] / z[:, None]
    normals_cam = templates.normals[view][valid].astype(np.float64) @ R.T
    normals = normals_cam[:, :2] * np.array([K[0, 0], K[1, 1]])  # image direction of the 3D normal
    norm = np.linalg.norm(normals, axis=1)
    ok = norm > 1e-9
    normals = normals[ok] / norm[ok, None]
    scale = K[0, 0] / z[ok]  # pixels per metre at each point's depth
    return Contour(
        points_obj=points_obj[ok],
        centres=centres[ok],
        normals=normals,
        points_cam=points_cam[ok],
        foreground_px=templates.foreground_m[view][valid][ok] * scale,
        background_px=templates.background_m[view][valid][ok] * scale,
        view=view,
    )


def colour_samples(
    image: CodeImage, contour: Contour, skip_px: float, length_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """Colour codes of the pixels from ``skip_px`` to ``length_px`` inside (foreground) and outside
    (background) the contour along every line, each side cut at the template's run length."""
    offsets = np.arange(skip_px, length_px + 1e-9, 1.0)
    c, n = contour.centres, contour.normals

    def side(sign: float, run: np.ndarray) -> np.ndarray:
        u = c[:, 0:1] + sign * offsets * n[:, 0:1]
        v = c[:, 1:2] + sign * offsets * n[:, 1:2]
        codes = image.sample(u, v)
        return np.where(offsets[None, :] <= run[:, None], codes, -1)

    return side(-1.0, contour.foreground_px), side(1.0, contour.background_px)


def fit_lines(
    image: CodeImage,
    contour: Contour,
    colours: ColourModel,
    *,
    scale: int,
    search_segments: int,
    window_segments: int,
    amplitude: float,
    slope: float,
    min_run_segments: float,
) -> LineFit:
    """The contour's posterior along every line of ``contour`` at ``scale`` pixels per segment (module
    docstring)."""
    W, H = image.image_size
    D, Wn, s = search_segments, window_segments, scale
    n_segments = 2 * (D + Wn)
    n_pixels = n_segments * s
    c, n = contour.centres, contour.normals
    keep = (
        (c[:, 0] >= 0)
        & (c[:, 0] <= W - 1)
        & (c[:, 1] >= 0)
        & (c[:, 1] <= H - 1)
        & (contour.foreground_px >= min_run_segments * s)
        & (contour.background_px >= min_run_segments * s)
    )
    c, n = c[keep], n[keep]
    # Pixel positions along the line, outwards positive: segment j covers [(j - S/2) s, (j - S/2 + 1) s)
    # for S segments, so the line's centre is the boundary between segments S/2 - 1 and S/2.
    offsets = np.arange(n_pixels) - n_pixels / 2.0 + 0.5
    u = c[:, 0:1] + offsets * n[:, 0:1]
    v = c[:, 1:2] + offsets * n[:, 1:2]
    codes = image.sample(u, v)
    within = (offsets[None, :] >= -contour.foreground_px[keep, None]) & (
        offsets[None, :] <= contour.background_px[keep, None]
    )
    codes = np.where(within, codes, -1)
    log_ratio = colours.log_ratio(codes)  # (L, P), 0 where neutral
    segment_ratio = log_ratio.reshape(len(c), n_segments, s).sum(axis=2)
    p_object = 1.0 / (1.0 + np.exp(-np.clip(segment_ratio, -50.0, 50.0)))  # (L, n_seg)
    # Placement k (contour at segment boundary k - D, k = 0..2D) explains segments k .. k + 2 Wn - 1.
    x = np.arange(2 * Wn) - Wn + 0.5  # segment centres relative to the placement, segments
    h_object = 0.5 - amplitude * np.tanh(x / (2.0 * slope))
    window = np.arange(2 * D + 1)[:, None] + np.arange(2 * Wn)[None, :]
    q = p_object[:, window]  # (L, 2D + 1, 2 Wn)
    log_likelihood = np.log(h_object * q + (1.0 - h_object) * (1.0 - q)).sum(axis=2)
    log_likelihood -= log_likelihood.max(axis=1, keepdims=True)
    posterior = np.exp(log_likelihood)
    total = posterior.sum(axis=1, keepdims=True)
    posterior /= total
    placements = np.arange(-D, D + 1, dtype=np.float64)
    mean = posterior @ placements
    variance = posterior @ placements**2 - mean**2
    informative = (codes >= 0).mean(axis=1)
    return LineFit(
        contour=contour,
        mean_px=mean * s,
        variance_px2=np.maximum(variance, 1.0 / 12.0) * s * s,
        weight=informative,
        log_posterior_centre=log_likelihood[:, D] - np.log(total[:, 0]),
        keep=keep,
    )
