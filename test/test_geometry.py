"""Pose convention: quaternion order, inverses, projection round trips, error measures, input checks."""

import numpy as np
import pytest

from attn6d_ros import geometry as g

K = np.array([[572.4114, 0.0, 325.2611], [0.0, 573.57043, 242.04899], [0.0, 0.0, 1.0]])


def test_quat_xyzw_order_rotates_x_to_y_for_90_deg_about_z() -> None:
    # A wxyz mix-up would give a different rotation, so this pins the order.
    s = np.sqrt(0.5)
    R = g.quat_xyzw_to_matrix([0.0, 0.0, s, s])
    np.testing.assert_allclose(R @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)


def test_quat_xyzw_roundtrip_is_exact_in_float64() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        q = q if q[3] >= 0 else -q
        np.testing.assert_allclose(g.matrix_to_quat_xyzw(g.quat_xyzw_to_matrix(q)), q, atol=1e-12)


def test_pose_times_inverse_is_identity() -> None:
    T = g.pose_from_quat_xyzw([0.1, -0.2, 0.3, 0.9], [0.1, 0.2, 0.7])
    np.testing.assert_allclose(T @ g.invert_pose(T), np.eye(4), atol=1e-12)


def test_project_backproject_roundtrip() -> None:
    points = np.array([[0.1, -0.05, 0.8], [-0.2, 0.1, 1.5], [0.0, 0.0, 0.3]])
    uv = g.project(K, points)
    np.testing.assert_allclose(g.backproject(K, uv, points[:, 2]), points, atol=1e-12)
    # The principal point is where the optical axis lands.
    np.testing.assert_allclose(g.project(K, np.array([[0.0, 0.0, 2.0]]))[0], K[:2, 2])


def test_rotation_and_translation_errors() -> None:
    T_a = g.pose_from_quat_xyzw([0, 0, 0, 1], [0.0, 0.0, 1.0])
    T_b = np.eye(4)
    T_b[:3, :3] = g.axis_angle_to_matrix([0.0, np.radians(30.0), 0.0])
    T_b[:3, 3] = [0.03, 0.04, 1.0]
    assert g.rotation_error_deg(T_a, T_b) == pytest.approx(30.0)
    assert g.translation_error(T_a, T_b) == pytest.approx(0.05)
    batch = g.rotation_error_deg(np.stack([T_a, T_b]), np.stack([T_b, T_b]))
    np.testing.assert_allclose(batch, [30.0, 0.0], atol=1e-6)


@pytest.mark.parametrize(
    ("T", "message"),
    [
        (np.full((4, 4), np.nan), "non-finite"),
        (np.eye(3), "4x4"),
        (np.diag([1.0, 1.0, -1.0, 1.0]), "rotation"),
    ],
)
def test_check_pose_names_the_problem(T: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        g.check_pose(T, name="detections[0].pose")
    assert "detections[0].pose" in str(info.value)


def test_check_intrinsics_rejects_zero_focal_length() -> None:
    with pytest.raises(ValueError, match="focal lengths must be > 0"):
        g.check_intrinsics(np.zeros((3, 3)))


@pytest.mark.parametrize("q", [[0.0, 0.0, 0.0, 0.0], [np.nan, 0.0, 0.0, 1.0], [np.inf, 0, 0, 1]])
def test_bad_quaternions_raise(q: list[float]) -> None:
    with pytest.raises(ValueError, match="orientation"):
        g.pose_from_quat_xyzw(q, [0.0, 0.0, 1.0])


def test_rigid_flow_of_a_sideways_shift_is_fx_dx_over_z() -> None:
    depth = np.zeros((40, 60))
    depth[10:30, 20:50] = 0.8
    T_from = g.pose_from_quat_xyzw([0, 0, 0, 1], [0.0, 0.0, 0.8])
    T_to = T_from.copy()
    T_to[0, 3] += 0.01  # 1 cm to the right at 0.8 m
    flow, valid = g.rigid_flow_px(K, depth, T_from, T_to)
    np.testing.assert_array_equal(valid, depth > 0)
    np.testing.assert_allclose(
        flow[valid], [[K[0, 0] * 0.01 / 0.8, 0.0]] * int(valid.sum()), atol=1e-3
    )
    assert not flow[~valid].any()


def test_rigid_flow_of_a_roll_turns_pixels_about_the_principal_point() -> None:
    # Rolling the object about the optical axis (in the camera frame) turns its image about (cx, cy).
    Kf = K.copy()
    Kf[1, 1] = Kf[0, 0]  # square pixels, so the image turns rigidly
    depth = np.full((480, 640), 0.5)
    T_from = g.pose_from_quat_xyzw([0, 0, 0, 1], [0.0, 0.0, 0.5])
    angle = np.deg2rad(10)
    T_to = np.eye(4)
    T_to[:3, :3] = g.axis_angle_to_matrix(np.array([0.0, 0.0, angle]))
    T_to = T_to @ T_from
    flow, _ = g.rigid_flow_px(Kf, depth, T_from, T_to)
    v, u = 100, 500
    d = np.array([u - Kf[0, 2], v - Kf[1, 2]])
    c, s = np.cos(angle), np.sin(angle)
    np.testing.assert_allclose(flow[v, u], np.array([c * d[0] - s * d[1], s * d[0] + c * d[1]]) - d,
                               atol=1e-3)  # fmt: skip


def test_moved_along_ray_keeps_the_pixel_and_scales_the_distance() -> None:
    T = np.eye(4)
    T[:3, :3] = g.axis_angle_to_matrix([0.1, -0.2, 0.3])
    T[:3, 3] = [0.05, -0.02, 0.8]
    moved = g.moved_along_ray(T, 1.1)
    np.testing.assert_array_equal(moved[:3, :3], T[:3, :3])
    np.testing.assert_allclose(moved[:3, 3], 1.1 * T[:3, 3])
    np.testing.assert_allclose(g.project(K, moved[None, :3, 3]), g.project(K, T[None, :3, 3]))
    assert T[2, 3] == 0.8  # the input is not changed
