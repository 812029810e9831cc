"""Pose accuracy metrics: ADD, ADD-S, 2D projection, 5 cm 5°, MSSD, MSPD (bop_toolkit definitions).

The definitions follow ``bop_toolkit_lib/pose_error.py`` and ``misc.get_symmetry_transformations`` at
``cea62d6`` (see ``refiner_anchors.md`` §6.2), in the project's units: poses are 4x4 float64 ``T_cam_obj``
(``geometry.py`` states the conventions), distances are metres and image distances pixels. ``points`` are
the model points in the object frame, e.g. ``ObjectModel.points``.

Two bop_toolkit habits are deliberately not copied:

- ``eval_calc_errors.py`` sets ADD, ADI and MSSD to infinity when ``‖t_est - t_gt‖ >= diameter``, a speed-up
  that needs the diameter. These functions return the true finite error instead. Verdicts can differ only
  for an estimate whose translation is off by a whole diameter or more; with the model origin at the
  model's centroid, ADD and MSSD are then at least the diameter anyway (each is at least the distance
  between the posed centroids), so both sides call it wrong.
- ``project_pts`` divides by z without a check. Here a GT pose that puts a model point at or behind the
  camera plane (z <= 0) is an input error (``ValueError``), and an estimate that does so has an infinite
  projection error, so that it counts as wrong instead of producing a meaningless mirrored projection.

Example::

    >>> errors = pose_errors(T_est, T_gt, K, model.points, model.diameter, model.symmetric)
    >>> errors.add_success, errors.cm_deg_success
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from attn6d_ros.geometry import (
    check_intrinsics,
    check_pose,
    project,
    project_points,
    rotation_error_deg,
    transform_points,
    translation_error,
)

# The usual thresholds (pose_errors uses these): ADD(-S) 0.1 d, 2D projection 5 px, 5 cm 5°.
ADD_FRACTION = 0.1
PROJECTION_THRESHOLD_PX = 5.0
CM_DEG_MAX_TRANSLATION = 0.05  # metres
CM_DEG_MAX_ROTATION_DEG = 5.0
# bop_toolkit's default `max_sym_disc_step`: ceil(pi / 0.01) = 315 rotations per continuous symmetry.
DEFAULT_MAX_DISCRETIZATION_STEP = 0.01
# BOP normalises MSPD to a 640-pixel-wide image (eval_calc_scores.py, `normalized_by_im_width`).
MSPD_REFERENCE_WIDTH_PX = 640
# Symmetries are transformed in chunks of this many points in total, to bound memory (S * N * 3 floats).
_CHUNK_POINTS = 1_000_000
# Same tolerance as geometry.check_pose: float32 round trips of the symmetries in models_info.json pass.
_ORTHONORMAL_TOL = 1e-3


@dataclass(frozen=True)
class PoseErrors:
    """The per-detection errors and verdicts the evaluation reports (see ``pose_errors``).

    Attributes:
        add_or_add_s: ADD, or ADD-S for a symmetric object, metres.
        add_success: ``add_or_add_s < 0.1 * diameter`` (strict, bop_toolkit).
        proj_px: mean 2D projection error, pixels (not symmetry-aware, as bop_toolkit ``proj``).
        proj_success: ``proj_px < 5`` pixels (strict).
        rot_err_deg: geodesic rotation error, degrees, in [0, 180].
        trans_err: translation error, metres.
        depth_err: the translation error along the camera's optical axis, ``|t_z - t_z_gt|``, metres.
        cm_deg_success: ``trans_err < 0.05`` and ``rot_err_deg < 5`` (strict, 5 cm 5°).
    """

    add_or_add_s: float
    add_success: bool
    proj_px: float
    proj_success: bool
    rot_err_deg: float
    trans_err: float
    depth_err: float
    cm_deg_success: bool


def _check_points(points: np.ndarray, name: str = "points") -> np.ndarray:
    """Validates (N, 3) finite points with N >= 1; returns them as float64."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got shape {points.shape}")
    if points.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one point, got shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError(
            f"{name} has non-finite entries ({np.count_nonzero(~np.isfinite(points))} of them)"
        )
    return points


def _check_positive(value: float, name: str) -> float:
    """Validates a finite number > 0; returns it as float."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}") from None
    if not math.isfinite(number) or number <= 0.0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def _check_error(value: float, name: str) -> float:
    """Validates an error value: >= 0 or +inf (a failed estimate), never NaN; returns it as float."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}") from None
    if math.isnan(number) or number < 0.0:
        raise ValueError(f"{name} must be a number >= 0 (inf allowed), got {value!r}")
    return number


def _check_symmetries(symmetries: np.ndarray, name: str = "symmetries") -> np.ndarray:
    """Validates an (S, 4, 4) stack of rigid transforms with S >= 1; returns it as float64."""
    syms = np.asarray(symmetries, dtype=np.float64)
    if syms.ndim != 3 or syms.shape[1:] != (4, 4) or syms.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape (S, 4, 4) with S >= 1 (identity included), "
            f"got shape {syms.shape}"
        )
    if not np.all(np.isfinite(syms)):
        raise ValueError(f"{name} has non-finite entries")
    bad_row = ~np.all(np.abs(syms[:, 3] - [0.0, 0.0, 0.0, 1.0]) <= 1e-9, axis=1)
    if np.any(bad_row):
        i = int(np.flatnonzero(bad_row)[0])
        raise ValueError(f"{name}[{i}] bottom row must be [0, 0, 0, 1], got {syms[i, 3].tolist()}")
    R = syms[:, :3, :3]
    gram_err = np.abs(np.swapaxes(R, 1, 2) @ R - np.eye(3)).max(axis=(1, 2))
    bad_rot = (gram_err > _ORTHONORMAL_TOL) | (np.linalg.det(R) < 0)
    if np.any(bad_rot):
        i = int(np.flatnonzero(bad_rot)[0])
        raise ValueError(f"{name}[{i}] rotation block is not a rotation matrix: {R[i].tolist()}")
    return syms


def _check_pair(T_est: np.ndarray, T_gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return check_pose(T_est, "T_est"), check_pose(T_gt, "T_gt")


def _add(T_est: np.ndarray, T_gt: np.ndarray, points: np.ndarray) -> float:
    """Mean distance between corresponding posed points."""
    diff = transform_points(T_est, points) - transform_points(T_gt, points)
    return float(np.linalg.norm(diff, axis=1).mean())


def _add_s(T_est: np.ndarray, T_gt: np.ndarray, points: np.ndarray) -> float:
    """Mean distance from each GT-posed point to the closest estimated-posed point (bop ``adi``)."""
    # Direction as bop_toolkit: the tree holds the estimate and the GT points query it. Swapping them
    # changes the value slightly for non-symmetric shapes.
    distances, _ = cKDTree(transform_points(T_est, points)).query(
        transform_points(T_gt, points), k=1
    )
    return float(np.mean(distances))


def _projected(K: np.ndarray, points_cam: np.ndarray) -> np.ndarray | None:
    """Pixels of (..., N, 3) camera points, or None when any point is at or behind the camera plane."""
    if np.any(points_cam[..., 2] <= 0.0):
        return None
    return project(K, points_cam.reshape(-1, 3)).reshape(*points_cam.shape[:-1], 2)


def _check_gt_in_front(T_gt: np.ndarray, points: np.ndarray) -> None:
    z = transform_points(T_gt, points)[:, 2]
    if np.any(z <= 0.0):
        raise ValueError(
            f"T_gt puts {np.count_nonzero(z <= 0.0)} model points at or behind the camera plane "
            f"(min z = {z.min():.6g} m); projection errors need every GT-posed point at z > 0"
        )


def _proj(T_est: np.ndarray, T_gt: np.ndarray, K: np.ndarray, points: np.ndarray) -> float:
    """Mean 2D distance between corresponding projected points; inf if the estimate reaches z <= 0."""
    uv_est = _projected(K, transform_points(T_est, points))
    if uv_est is None:
        return math.inf
    uv_gt = project_points(K, T_gt, points)
    return float(np.linalg.norm(uv_est - uv_gt, axis=1).mean())


def _gt_sym_points_chunks(
    T_gt: np.ndarray, symmetries: np.ndarray, points: np.ndarray
) -> Iterator[np.ndarray]:
    """Yields (s, N, 3) camera-frame points of the GT pose composed with each symmetry, in chunks."""
    chunk = max(1, _CHUNK_POINTS // len(points))
    for start in range(0, len(symmetries), chunk):
        # T_gt @ T_sym: rotation R_gt R_S, translation R_gt t_S + t_gt (bop mssd / mspd).
        T_gt_sym = T_gt @ symmetries[start : start + chunk]  # (s, 4, 4)
        R_gt_sym_T = np.swapaxes(T_gt_sym[:, :3, :3], 1, 2)
        yield points @ R_gt_sym_T + T_gt_sym[:, None, :3, 3]  # (s, N, 3)


def add(T_est: np.ndarray, T_gt: np.ndarray, points: np.ndarray) -> float:
    """ADD: mean distance between the model points under the estimated and the GT pose.

    Args:
        T_est: (4, 4) float64 estimated ``T_cam_obj``, metres.
        T_gt: (4, 4) float64 ground-truth ``T_cam_obj``, metres.
        points: (N, 3) model points in the object frame, metres, N >= 1.

    Returns:
        The mean of ``‖T_est x - T_gt x‖`` over the points, metres.

    Raises:
        ValueError: a pose that is not a rigid transform, or points that are not (N >= 1, 3) and finite.
    """
    T_est, T_gt = _check_pair(T_est, T_gt)
    return _add(T_est, T_gt, _check_points(points))


def add_s(T_est: np.ndarray, T_gt: np.ndarray, points: np.ndarray) -> float:
    """ADD-S (ADI): mean distance from each GT-posed point to the closest estimated-posed point.

    As bop_toolkit ``adi``: a k-d tree holds the estimated points and each GT point queries it. Never larger
    than ``add`` for the same inputs.

    Args:
        T_est: (4, 4) float64 estimated ``T_cam_obj``, metres.
        T_gt: (4, 4) float64 ground-truth ``T_cam_obj``, metres.
        points: (N, 3) model points in the object frame, metres, N >= 1.

    Returns:
        The mean closest-point distance, metres.

    Raises:
        ValueError: a pose that is not a rigid transform, or points that are not (N >= 1, 3) and finite.
    """
    T_est, T_gt = _check_pair(T_est, T_gt)
    return _add_s(T_est, T_gt, _check_points(points))


def add_or_add_s(
    T_est: np.ndarray, T_gt: np.ndarray, points: np.ndarray, symmetric: bool
) -> float:
    """ADD for an ordinary object, ADD-S for a symmetric one (bop_toolkit ``error_type="ad"``).

    Args:
        T_est: (4, 4) float64 estimated ``T_cam_obj``, metres.
        T_gt: (4, 4) float64 ground-truth ``T_cam_obj``, metres.
        points: (N, 3) model points in the object frame, metres, N >= 1.
        symmetric: use ADD-S (e.g. LineMOD eggbox and glue; ``ObjectModel.symmetric``).

    Returns:
        The error, metres.

    Raises:
        ValueError: as ``add``.
    """
    T_est, T_gt = _check_pair(T_est, T_gt)
    points = _check_points(points)
    return _add_s(T_est, T_gt, points) if symmetric else _add(T_est, T_gt, points)


def add_success(error: float, diameter: float, *, fraction: float = ADD_FRACTION) -> bool:
    """Whether an ADD / ADD-S error counts as correct: ``error < fraction * diameter``.

    The comparison is strict, as bop_toolkit's ``correct_th`` test. The paper's repository
    (stevsics/attention_6d_pose) uses ``<=``; the two differ only for an error exactly at the threshold.

    Args:
        error: ADD or ADD-S, metres, >= 0 (inf counts as wrong).
        diameter: object diameter, metres, > 0.
        fraction: threshold as a fraction of the diameter, > 0 (0.1 is the usual ADD(-S) 0.1d).

    Returns:
        True when the error is below the threshold.

    Raises:
        ValueError: a NaN or negative error, or a diameter or fraction that is not a finite number > 0.
    """
    error = _check_error(error, "error")
    diameter = _check_positive(diameter, "diameter")
    fraction = _check_positive(fraction, "fraction")
    return error < fraction * diameter


def projection_error_px(
    T_est: np.ndarray, T_gt: np.ndarray, K: np.ndarray, points: np.ndarray
) -> float:
    """2D projection error: mean pixel distance between the projected model points (bop_toolkit ``proj``).

    Not symmetry-aware, as in bop_toolkit.

    Args:
        T_est: (4, 4) float64 estimated ``T_cam_obj``, metres.
        T_gt: (4, 4) float64 ground-truth ``T_cam_obj``, metres.
        K: (3, 3) float64 camera intrinsics, pixels.
        points: (N, 3) model points in the object frame, metres, N >= 1.

    Returns:
        The mean of ``‖π(K, T_est x) - π(K, T_gt x)‖`` over the points, pixels; inf when the estimate puts a
        point at or behind the camera plane (z <= 0).

    Raises:
        ValueError: invalid poses, intrinsics or points, or a GT pose with a point at z <= 0.
    """
    T_est, T_gt = _check_pair(T_est, T_gt)
    K = check_intrinsics(K)
    points = _check_points(points)
    _check_gt_in_front(T_gt, points)
    return _proj(T_est, T_gt, K, points)


def projection_success(err_px: float, *, threshold_px: float = PROJECTION_THRESHOLD_PX) -> bool:
    """Whether a 2D projection error counts as correct: ``err_px < threshold_px`` (strict, bop_toolkit).

    Args:
        err_px: projection error, pixels, >= 0 (inf counts as wrong).
        threshold_px: threshold, pixels, > 0 (5 px is the usual 2D projection metric).

    Returns:
        True when the error is below the threshold.

    Raises:
        ValueError: a NaN or negative error, or a threshold that is not a finite number > 0.
    """
    err_px = _check_error(err_px, "err_px")
    threshold_px = _check_positive(threshold_px, "threshold_px")
    return err_px < threshold_px


def cm_deg_success(
    T_est: np.ndarray,
    T_gt: np.ndarray,
    *,
    max_translation: float = CM_DEG_MAX_TRANSLATION,
    max_rotation_deg: float = CM_DEG_MAX_ROTATION_DEG,
) -> bool:
    """The n cm n° criterion: ``te < max_translation`` and ``re < max_rotation_deg`` (both strict).

    bop_toolkit's ``rete`` with explicit units: its default ``[5.0, 5.0]`` is 5° and 5 *mm* because BOP
    translations are in mm; here the default is the intended 5 cm.

    Args:
        T_est: (4, 4) float64 estimated ``T_cam_obj``, metres.
        T_gt: (4, 4) float64 ground-truth ``T_cam_obj``, metres.
        max_translation: translation threshold, metres, > 0.
        max_rotation_deg: rotation threshold, degrees, > 0.

    Returns:
        True when both errors are below their thresholds.

    Raises:
        ValueError: a pose that is not a rigid transform, or a threshold that is not a finite number > 0.
    """
    T_est, T_gt = _check_pair(T_est, T_gt)
    max_translation = _check_positive(max_translation, "max_translation")
    max_rotation_deg = _check_positive(max_rotation_deg, "max_rotation_deg")
    return (
        translation_error(T_est, T_gt) < max_translation
        and rotation_error_deg(T_est, T_gt) < max_rotation_deg
    )


def symmetry_transformations(
    discrete: Sequence[np.ndarray] = (),
    continuous: Sequence[Mapping[str, np.ndarray]] = (),
    max_discretization_step: float = DEFAULT_MAX_DISCRETIZATION_STEP,
) -> np.ndarray:
    """The symmetry set for MSSD / MSPD, as bop_toolkit ``get_symmetry_transformations``.

    The discrete set is the identity followed by ``discrete``. Each continuous symmetry is discretised into
    ``n = ceil(pi / max_discretization_step)`` rotations by ``2 pi k / n`` (k = 0 .. n-1) about its axis
    through its offset; the rotations of several continuous symmetries are pooled, not composed. Without
    continuous symmetries the result is the discrete set; with them it is every pooled continuous
    rotation composed after every discrete element, ``T_cont @ T_disc``, ordered discrete-major.

    Args:
        discrete: discrete symmetries of the object, each a (4, 4) rigid transform in the object frame or
            its 16 entries row-major (the layout of ``models_info.json``); translation in metres.
        continuous: continuous rotational symmetries, each a mapping with ``"axis"``: (3,) direction (any
            non-zero length) and ``"offset"``: (3,) a point on the axis, object frame, metres.
        max_discretization_step: bop_toolkit's ``max_sym_disc_step`` (0.01 gives 315 rotations), > 0. It
            sets the step count only; the angular step is 2 pi / n, which is at most 2 * this value.

    Returns:
        (S, 4, 4) float64 transforms, identity first; S = 1 + len(discrete) without continuous symmetries,
        else (1 + len(discrete)) * n * len(continuous).

    Raises:
        ValueError: a discrete symmetry that is not a rigid transform, a continuous one without a finite
            non-zero ``axis`` or a finite ``offset``, or a step that is not a finite number > 0.
    """
    step = _check_positive(max_discretization_step, "max_discretization_step")

    trans_disc = [np.eye(4)]
    for i, sym in enumerate(discrete):
        sym = np.asarray(sym, dtype=np.float64)
        if sym.shape == (16,):
            sym = sym.reshape(4, 4)
        if sym.shape != (4, 4):
            raise ValueError(
                f"discrete[{i}] must be a 4x4 matrix or 16 numbers, got shape {sym.shape}"
            )
        trans_disc.append(check_pose(sym, f"discrete[{i}]"))
    disc = np.stack(trans_disc)  # (D, 4, 4), identity first

    cont_list = []
    for i, sym in enumerate(continuous):
        if not isinstance(sym, Mapping) or "axis" not in sym or "offset" not in sym:
            raise ValueError(
                f"continuous[{i}] must be a mapping with 'axis' and 'offset', got {sym!r}"
            )
        axis = np.asarray(sym["axis"], dtype=np.float64)
        offset = np.asarray(sym["offset"], dtype=np.float64)
        if axis.shape != (3,) or not np.all(np.isfinite(axis)) or np.linalg.norm(axis) < 1e-12:
            raise ValueError(
                f"continuous[{i}]['axis'] must be 3 finite numbers, not all zero, "
                f"got {np.asarray(sym['axis']).tolist()}"
            )
        if offset.shape != (3,) or not np.all(np.isfinite(offset)):
            raise ValueError(
                f"continuous[{i}]['offset'] must be 3 finite numbers (metres), "
                f"got {np.asarray(sym['offset']).tolist()}"
            )
        n = math.ceil(math.pi / step)
        angles = np.arange(n) * (2.0 * math.pi / n)
        R = Rotation.from_rotvec(angles[:, None] * (axis / np.linalg.norm(axis))).as_matrix()
        T = np.tile(np.eye(4), (n, 1, 1))
        T[:, :3, :3] = R
        # A rotation about the axis through the offset o: x -> R (x - o) + o.
        T[:, :3, 3] = offset - R @ offset
        cont_list.append(T)

    if not cont_list:
        return disc
    cont = np.concatenate(cont_list)  # (C, 4, 4)
    # Discrete-major order, as bop_toolkit's nested loops: element d * C + c is cont[c] @ disc[d].
    return np.einsum("cij,djk->dcik", cont, disc).reshape(-1, 4, 4)


def mssd(T_est: np.ndarray, T_gt: np.ndarray, points: np.ndarray, symmetries: np.ndarray) -> float:
    """MSSD: over the symmetries, the smallest maximum distance between corresponding posed points.

    ``min_S max_x ‖T_est x - T_gt T_S x‖`` (bop_toolkit ``mssd``).

    Args:
        T_est: (4, 4) float64 estimated ``T_cam_obj``, metres.
        T_gt: (4, 4) float64 ground-truth ``T_cam_obj``, metres.
        points: (N, 3) model points in the object frame, metres, N >= 1.
        symmetries: (S, 4, 4) symmetry transforms in the object frame, metres, identity included, as from
            ``symmetry_transformations``; ``np.eye(4)[None]`` for an object without symmetries.

    Returns:
        The error, metres.

    Raises:
        ValueError: invalid poses, points or symmetries.
    """
    T_est, T_gt = _check_pair(T_est, T_gt)
    points = _check_points(points)
    symmetries = _check_symmetries(symmetries)
    pts_est = transform_points(T_est, points)  # (N, 3)
    best = math.inf
    for pts_gt_sym in _gt_sym_points_chunks(T_gt, symmetries, points):
        best = min(best, float(np.linalg.norm(pts_est - pts_gt_sym, axis=2).max(axis=1).min()))
    return best


def mspd(
    T_est: np.ndarray,
    T_gt: np.ndarray,
    K: np.ndarray,
    points: np.ndarray,
    symmetries: np.ndarray,
    *,
    image_width: int = MSPD_REFERENCE_WIDTH_PX,
) -> float:
    """MSPD: over the symmetries, the smallest maximum pixel distance between projected points.

    ``min_S max_x ‖π(K, T_est x) - π(K, T_gt T_S x)‖ * 640 / image_width``: bop_toolkit ``mspd`` followed
    by the image-width normalisation that BOP applies in ``eval_calc_scores.py``.

    Args:
        T_est: (4, 4) float64 estimated ``T_cam_obj``, metres.
        T_gt: (4, 4) float64 ground-truth ``T_cam_obj``, metres.
        K: (3, 3) float64 camera intrinsics, pixels.
        points: (N, 3) model points in the object frame, metres, N >= 1.
        symmetries: (S, 4, 4) symmetry transforms, as for ``mssd``.
        image_width: width of the image that ``K`` belongs to, pixels, > 0.

    Returns:
        The normalised error, pixels; inf when the estimate puts a point at or behind the camera plane.
        A symmetry that would put a GT point there is skipped.

    Raises:
        ValueError: invalid poses, intrinsics, points, symmetries or width, or a GT pose with a point at
            z <= 0.
    """
    T_est, T_gt = _check_pair(T_est, T_gt)
    K = check_intrinsics(K)
    points = _check_points(points)
    symmetries = _check_symmetries(symmetries)
    width = _check_positive(image_width, "image_width")
    _check_gt_in_front(T_gt, points)
    uv_est = _projected(K, transform_points(T_est, points))
    if uv_est is None:
        return math.inf
    best = math.inf
    for pts_gt_sym in _gt_sym_points_chunks(T_gt, symmetries, points):
        in_front = np.all(pts_gt_sym[..., 2] > 0.0, axis=1)  # (s,)
        if not np.any(in_front):
            continue
        uv_gt_sym = _projected(K, pts_gt_sym[in_front])  # (s', N, 2)
        best = min(best, float(np.linalg.norm(uv_est - uv_gt_sym, axis=2).max(axis=1).min()))
    return best * (MSPD_REFERENCE_WIDTH_PX / width)


def pose_errors(
    T_est: np.ndarray,
    T_gt: np.ndarray,
    K: np.ndarray,
    points: np.ndarray,
    diameter: float,
    symmetric: bool,
) -> PoseErrors:
    """All per-detection errors of the evaluation at their usual thresholds.

    ADD (ADD-S if ``symmetric``) < 0.1 diameter, 2D projection < 5 px, 5 cm 5°; all strict.

    Args:
        T_est: (4, 4) float64 estimated ``T_cam_obj``, metres.
        T_gt: (4, 4) float64 ground-truth ``T_cam_obj``, metres.
        K: (3, 3) float64 camera intrinsics, pixels.
        points: (N, 3) model points in the object frame, metres, N >= 1.
        diameter: object diameter, metres, > 0.
        symmetric: use ADD-S instead of ADD.

    Returns:
        The errors and verdicts.

    Raises:
        ValueError: invalid poses, intrinsics, points or diameter, or a GT pose with a point at z <= 0.
    """
    T_est, T_gt = _check_pair(T_est, T_gt)
    K = check_intrinsics(K)
    points = _check_points(points)
    diameter = _check_positive(diameter, "diameter")
    _check_gt_in_front(T_gt, points)
    add_err = _add_s(T_est, T_gt, points) if symmetric else _add(T_est, T_gt, points)
    proj_px = _proj(T_est, T_gt, K, points)
    rot_err_deg = float(rotation_error_deg(T_est, T_gt))
    trans_err = float(translation_error(T_est, T_gt))
    return PoseErrors(
        add_or_add_s=add_err,
        add_success=add_success(add_err, diameter),
        proj_px=proj_px,
        proj_success=projection_success(proj_px),
        rot_err_deg=rot_err_deg,
        trans_err=trans_err,
        depth_err=float(abs(T_est[2, 3] - T_gt[2, 3])),
        cm_deg_success=trans_err < CM_DEG_MAX_TRANSLATION
        and rot_err_deg < CM_DEG_MAX_ROTATION_DEG,
    )
