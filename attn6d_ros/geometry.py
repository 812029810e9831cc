"""Poses, quaternions and the pinhole camera: the one place that states the project's conventions.

Conventions (everything else in the project refers here):

- A pose is a 4x4 float64 homogeneous matrix named after its frames: ``T_a_b`` maps points from frame b into
  frame a, ``p_a = T_a_b @ p_b``. The object pose is ``T_cam_obj``. Matrices act on column vectors.
- The camera frame is OpenCV / ROS optical: x right, y down, z forward. Units are metres, radians and
  seconds unless a name says otherwise (``rot_err_deg``, ``crop_size_px``).
- Pixels: pixel centres lie on integer coordinates (OpenCV); the pixel (u, v) = (column, row).
  ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` maps camera points to pixels: ``u = fx x / z + cx``.
- Quaternions are ordered x, y, z, w (scalar last), as in ROS messages, SciPy and the paper's code, and the
  order is part of every function name (``q_xyzw``). They appear only at the ROS border and in the network's
  rotation output; everywhere else rotations are 3x3 matrices.
- The OpenGL camera (y up, z backward) and its half-pixel offset exist only inside render/.

Example::

    >>> T_cam_obj = pose_from_quat_xyzw([0, 0, 0.7071068, 0.7071068], [0.0, 0.0, 0.5])
    >>> project_points(K, T_cam_obj, np.zeros((1, 3)))   # the object origin, at (cx, cy)
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

# A rotation block is accepted as a rotation when R^T R is this close to I (float32 round trips pass).
_ORTHONORMAL_TOL = 1e-3


def check_pose(T: np.ndarray, name: str = "T_cam_obj") -> np.ndarray:
    """Validates a 4x4 rigid transform and returns it as float64.

    Raises:
        ValueError: wrong shape, non-finite entries, a bottom row other than [0, 0, 0, 1], or a rotation
            block that is not orthonormal with determinant +1. The message names ``name`` and the problem.
    """
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"{name} must be a 4x4 matrix, got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise ValueError(f"{name} has non-finite entries: {T.tolist()}")
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=1e-9):
        raise ValueError(f"{name} bottom row must be [0, 0, 0, 1], got {T[3].tolist()}")
    R = T[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=_ORTHONORMAL_TOL) or np.linalg.det(R) < 0:
        raise ValueError(f"{name} rotation block is not a rotation matrix: {R.tolist()}")
    return T


def check_intrinsics(K: np.ndarray, name: str = "K") -> np.ndarray:
    """Validates a 3x3 pinhole matrix (positive finite focal lengths, [0, 0, 1] last row); returns float64."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"{name} must be a 3x3 matrix, got shape {K.shape}")
    if not np.all(np.isfinite(K)):
        raise ValueError(f"{name} has non-finite entries: {K.tolist()}")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"{name} focal lengths must be > 0, got fx={K[0, 0]}, fy={K[1, 1]}")
    if not np.allclose(K[2], [0.0, 0.0, 1.0]):
        raise ValueError(f"{name} last row must be [0, 0, 1], got {K[2].tolist()}")
    return K


def transform_points(T_a_b: np.ndarray, points_b: np.ndarray) -> np.ndarray:
    """Maps (N, 3) points from frame b into frame a."""
    return points_b @ T_a_b[:3, :3].T + T_a_b[:3, 3]


def project(K: np.ndarray, points_cam: np.ndarray) -> np.ndarray:
    """Projects (N, 3) camera-frame points (z > 0) to (N, 2) pixels (u, v)."""
    uvw = points_cam @ K.T
    return uvw[:, :2] / uvw[:, 2:3]


def project_points(K: np.ndarray, T_cam_obj: np.ndarray, points_obj: np.ndarray) -> np.ndarray:
    """Projects (N, 3) object-frame points under ``T_cam_obj`` to (N, 2) pixels."""
    return project(K, transform_points(T_cam_obj, points_obj))


def backproject(K: np.ndarray, uv: np.ndarray, depth: np.ndarray | float) -> np.ndarray:
    """Lifts (N, 2) pixels at depth z (metres, along the optical axis) to (N, 3) camera-frame points."""
    uv = np.atleast_2d(np.asarray(uv, dtype=np.float64))
    z = np.broadcast_to(np.asarray(depth, dtype=np.float64), uv.shape[:1])
    x = (uv[:, 0] - K[0, 2]) / K[0, 0]
    y = (uv[:, 1] - K[1, 2]) / K[1, 1]
    return np.stack([x * z, y * z, z], axis=1)


def rigid_flow_px(
    K: np.ndarray, depth_m: np.ndarray, T_cam_from: np.ndarray, T_cam_to: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Image motion of an object's surface when its pose changes from ``T_cam_from`` to ``T_cam_to``.

    Args:
        K: intrinsics of the image the depth was rendered into.
        depth_m: (H, W) depth of the object at ``T_cam_from``, metres along the optical axis (0 = none).
        T_cam_from, T_cam_to: the two object poses.
    Returns:
        flow (H, W, 2) float32 pixels (du, dv) where each surface point moves to (0 off the object), and
        valid (H, W) bool, the pixels that show the object.
    """
    depth_m = np.asarray(depth_m)
    valid = depth_m > 0
    flow = np.zeros((*depth_m.shape, 2), np.float32)
    if not valid.any():
        return flow, valid
    v, u = np.nonzero(valid)
    uv = np.stack([u, v], axis=1).astype(np.float64)
    points_cam = backproject(K, uv, depth_m[valid])
    T_to_from = T_cam_to @ invert_pose(T_cam_from)
    flow[valid] = project(K, transform_points(T_to_from, points_cam)) - uv
    return flow, valid


def quat_xyzw_to_matrix(q_xyzw: np.ndarray, name: str = "quaternion") -> np.ndarray:
    """Converts a quaternion (x, y, z, w) to a 3x3 rotation matrix; normalises it first.

    Raises:
        ValueError: non-finite or (near) zero-norm quaternion; the message names ``name`` and the value.
    """
    q = np.asarray(q_xyzw, dtype=np.float64)
    if q.shape != (4,):
        raise ValueError(f"{name} must have 4 components (x, y, z, w), got shape {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ValueError(f"{name} has non-finite components: {q.tolist()}")
    norm = np.linalg.norm(q)
    if norm < 1e-6:
        raise ValueError(f"{name} has zero norm ({norm:.3g}): {q.tolist()}")
    return Rotation.from_quat(q / norm).as_matrix()


def matrix_to_quat_xyzw(R: np.ndarray) -> np.ndarray:
    """Converts a 3x3 rotation matrix to a unit quaternion (x, y, z, w) with w >= 0."""
    q = Rotation.from_matrix(np.asarray(R, dtype=np.float64)).as_quat()
    return q if q[3] >= 0 else -q


def pose_from_quat_xyzw(q_xyzw: np.ndarray, t: np.ndarray, name: str = "pose") -> np.ndarray:
    """Builds a 4x4 pose from a quaternion (x, y, z, w) and a translation (metres)."""
    t = np.asarray(t, dtype=np.float64)
    if t.shape != (3,) or not np.all(np.isfinite(t)):
        raise ValueError(
            f"{name} translation must be 3 finite numbers, got {np.asarray(t).tolist()}"
        )
    T = np.eye(4)
    T[:3, :3] = quat_xyzw_to_matrix(q_xyzw, name=f"{name} orientation")
    T[:3, 3] = t
    return T


def pose_to_quat_xyzw(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Splits a 4x4 pose into (quaternion x, y, z, w; translation in metres)."""
    return matrix_to_quat_xyzw(T[:3, :3]), np.array(T[:3, 3], dtype=np.float64)


def moved_along_ray(T_cam_obj: np.ndarray, factor: float) -> np.ndarray:
    """A copy of the pose with its translation scaled by `factor`: the object origin stays on the same pixel
    (its viewing ray) at `factor` times the distance."""
    moved = np.array(T_cam_obj, dtype=np.float64)
    moved[:3, 3] *= factor
    return moved


def invert_pose(T_a_b: np.ndarray) -> np.ndarray:
    """Returns ``T_b_a``, the inverse of a rigid transform."""
    T_b_a = np.eye(4)
    R = T_a_b[:3, :3]
    T_b_a[:3, :3] = R.T
    T_b_a[:3, 3] = -R.T @ T_a_b[:3, 3]
    return T_b_a


def _rotation_part(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return X[..., :3, :3] if X.shape[-2:] == (4, 4) else X


def rotation_error_deg(A: np.ndarray, B: np.ndarray) -> np.ndarray | float:
    """Geodesic angle between two rotations, degrees, in [0, 180]. Takes 3x3 rotations or 4x4 poses,
    batched over leading dimensions (bop_toolkit ``re``)."""
    R_rel = np.swapaxes(_rotation_part(A), -1, -2) @ _rotation_part(B)
    cos = (np.trace(R_rel, axis1=-2, axis2=-1) - 1.0) / 2.0
    angle = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return float(angle) if np.ndim(angle) == 0 else angle


def translation_error(A: np.ndarray, B: np.ndarray) -> np.ndarray | float:
    """Euclidean distance between two translations, metres. Takes 3-vectors or 4x4 poses, batched."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    t_a = A[..., :3, 3] if A.shape[-2:] == (4, 4) else A
    t_b = B[..., :3, 3] if B.shape[-2:] == (4, 4) else B
    dist = np.linalg.norm(t_a - t_b, axis=-1)
    return float(dist) if np.ndim(dist) == 0 else dist


def axis_angle_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rotation vector (axis times angle, radians) to a 3x3 matrix; batched over leading dimensions."""
    return Rotation.from_rotvec(np.asarray(rotvec, dtype=np.float64)).as_matrix()


def matrix_to_axis_angle(R: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix to a rotation vector (axis times angle, radians); batched."""
    return Rotation.from_matrix(np.asarray(R, dtype=np.float64)).as_rotvec()
