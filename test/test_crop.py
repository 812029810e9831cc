"""The paper's crop: window placement, the image->crop map, crop intrinsics and bilinear resampling."""

import numpy as np
import pytest

from attn6d_ros.crop import CropWindow, compute_window, crop_image, crop_intrinsics
from attn6d_ros.geometry import project, project_points

K = np.array([[572.4, 0.0, 325.3], [0.0, 573.6, 242.0], [0.0, 0.0, 1.0]])
CUBE = np.array([[x, y, z] for x in (-0.05, 0.05) for y in (-0.05, 0.05) for z in (-0.05, 0.05)])


def _pose(t: tuple[float, float, float]) -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = t
    return T


def test_window_centre_is_projected_origin_and_half_side_is_1_4_radius() -> None:
    T = _pose((0.05, -0.02, 0.6))
    window = compute_window(K, T, CUBE)
    centre = project(K, T[None, :3, 3])[0]
    np.testing.assert_allclose(window.center_px, centre)
    uv = project_points(K, T, CUBE)
    radius = np.max(np.abs(uv - centre))
    assert window.half_size_px == pytest.approx(1.4 * radius)
    assert window.zoom == pytest.approx(152 / (2.8 * radius))


def test_crop_intrinsics_project_like_image_to_crop() -> None:
    T = _pose((0.05, -0.02, 0.6))
    window = compute_window(K, T, CUBE, size_px=96)
    points = np.array([[0.01, 0.02, 0.7], [-0.03, 0.0, 0.55]])
    uv_img = project(K, points)
    uv_crop = (window.image_to_crop @ np.c_[uv_img, np.ones(2)].T).T[:, :2]
    np.testing.assert_allclose(project(crop_intrinsics(K, window), points), uv_crop, atol=1e-9)


def test_window_edges_map_to_crop_edges() -> None:
    window = CropWindow(center_px=(100.0, 50.0), half_size_px=40.0, size_px=152)
    corners = np.array([[60.0, 10.0, 1.0], [140.0, 90.0, 1.0]])
    mapped = (window.image_to_crop @ corners.T).T[:, :2]
    np.testing.assert_allclose(mapped, [[-0.5, -0.5], [151.5, 151.5]])


def test_unit_zoom_crop_copies_pixels_exactly() -> None:
    image = np.random.default_rng(0).integers(0, 255, size=(120, 160, 3)).astype(np.uint8)
    # Side 40 image pixels -> 40 crop pixels, centre between pixels 59.5 / 79.5: an exact pixel copy.
    window = CropWindow(center_px=(79.5, 59.5), half_size_px=20.0, size_px=40)
    np.testing.assert_allclose(crop_image(image, window), image[40:80, 60:100].astype(np.float32))


def test_outside_the_image_is_zero() -> None:
    image = np.full((50, 50), 200, np.uint8)
    window = CropWindow(center_px=(0.0, 25.0), half_size_px=20.0, size_px=40)  # left half outside
    crop = crop_image(image, window)
    assert np.all(crop[:, :18] == 0) and np.all(crop[:, 22:] == 200)


def test_partial_image_with_origin_matches_full_crop() -> None:
    image = np.random.default_rng(1).uniform(0, 255, size=(100, 120, 3)).astype(np.float32)
    window = CropWindow(center_px=(30.0, 40.0), half_size_px=35.0, size_px=64)
    part = image[0:80, 0:70]  # covers the window's neighbourhood
    np.testing.assert_allclose(
        crop_image(part, window, origin_px=(0, 0), full_size=(120, 100)),
        crop_image(image, window),
        atol=1e-4,
    )
    shifted = image[5:80, 0:70]
    np.testing.assert_allclose(
        crop_image(shifted, window, origin_px=(0, 5), full_size=(120, 100)),
        crop_image(image, window),
        atol=1e-4,
    )


def test_object_behind_camera_is_an_error() -> None:
    with pytest.raises(ValueError, match="behind"):
        compute_window(K, _pose((0.0, 0.0, -0.5)), CUBE)
