"""The debug overlay: silhouettes where the renderer puts the object, the heat map where the attention is."""

import numpy as np
import pytest

from attn6d_ros.crop import compute_window
from attn6d_ros.mesh import model_from_arrays
from attn6d_ros.ros.overlay import (
    COARSE_COLOR,
    REFINED_COLOR,
    OverlayItem,
    attention_map_on_image,
    draw_overlay,
    refinement_label,
    silhouette_mask,
)

K = np.array([[400.0, 0.0, 159.5], [0.0, 400.0, 119.5], [0.0, 0.0, 1.0]])
W, H = 320, 240


@pytest.fixture(scope="module")
def box():
    import trimesh

    mesh = trimesh.creation.box(extents=(0.1, 0.06, 0.04))
    return model_from_arrays(mesh.vertices, mesh.faces, name="box")


def _pose(x: float = 0.0, z: float = 0.5, yaw_deg: float = 30.0) -> np.ndarray:
    a = np.radians(yaw_deg)
    T = np.eye(4)
    T[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    T[:3, 3] = [x, 0.01, z]
    return T


def test_silhouette_matches_the_renderer(box) -> None:
    from attn6d_ros.render import Renderer

    T = _pose()
    with Renderer() as renderer:
        rendered = renderer.render(box, T, K, W, H).mask
    ours = silhouette_mask(box, T, K, W, H)
    iou = (ours & rendered).sum() / (ours | rendered).sum()
    # Both rasterise the same pinhole projection; they differ only in edge pixels (PIL's polygon rule).
    assert iou > 0.95, iou


def test_silhouette_skips_faces_behind_the_camera(box) -> None:
    T = _pose(z=-0.5)
    assert not silhouette_mask(box, T, K, W, H).any()


def test_attention_peak_lands_on_its_image_pixel(box) -> None:
    T = _pose()
    window = compute_window(K, T, box.hull_vertices, size_px=64)
    G = 16
    attention = np.full((3, G, G), 1.0 / G**2)
    attention[:, 4, 11] = 0.3  # one hot cell: row 4, column 11 of the grid
    attention /= attention.sum(axis=(1, 2), keepdims=True)
    values, (rows, cols) = attention_map_on_image(attention, window, W, H)
    v, u = np.unravel_index(np.argmax(values), values.shape)
    # Cell centre in crop pixels is (11.5 * 4 - 0.5, 4.5 * 4 - 0.5); back to image pixels through the window.
    crop_xy = np.array([11.5 * 64 / G - 0.5, 4.5 * 64 / G - 0.5, 1.0])
    expected = np.linalg.solve(window.image_to_crop, crop_xy)[:2]
    assert abs(cols.start + u - expected[0]) <= 1.0 and abs(rows.start + v - expected[1]) <= 1.0
    assert values.max() == pytest.approx(
        1.0, abs=0.02
    )  # pixel centres sample near, not at, the peak


def test_uniform_attention_draws_no_heat(box) -> None:
    window = compute_window(K, _pose(), box.hull_vertices, size_px=64)
    values, _ = attention_map_on_image(np.full((3, 16, 16), 1.0 / 256), window, W, H)
    assert values.size and values.max() == 0.0


def test_window_outside_the_image_gives_an_empty_region(box) -> None:
    window = compute_window(K, _pose(x=2.0), box.hull_vertices, size_px=64)
    values, _ = attention_map_on_image(np.ones((16, 16)) / 256, window, W, H)
    assert values.size == 0


def test_overlay_draws_coarse_outline_refined_tint_and_keeps_the_input(box) -> None:
    image = np.full((H, W, 3), 60, np.uint8)
    before = image.copy()
    T_init, T = _pose(x=-0.04), _pose(x=0.04)
    item = OverlayItem(model=box, label="box", T_init=T_init, T=T, score=0.87)
    out = draw_overlay(image, K, [item])
    assert out.shape == image.shape and out.dtype == np.uint8 and np.array_equal(image, before)
    refined = silhouette_mask(box, T, K, W, H)
    coarse_only = silhouette_mask(box, T_init, K, W, H) & ~refined
    # Refined silhouette interior is tinted cyan; the coarse outline (outside the refined one) is amber.
    interior = refined & ~np.roll(refined, 3, axis=1) & ~np.roll(refined, -3, axis=1)
    tint = out[interior].astype(float).mean(axis=0)
    assert tint[2] > 100 and tint[1] > 100 and tint[0] < 60
    amber = np.all(out == COARSE_COLOR, axis=2)
    assert (amber & coarse_only).sum() > 50
    assert np.all(out == REFINED_COLOR, axis=2).sum() > 50  # refined outline


def test_failed_item_is_not_drawn_as_refined(box) -> None:
    image = np.full((H, W, 3), 60, np.uint8)
    item = OverlayItem(
        box, "box", T_init=_pose(), T=None, score=0.1, error="score 0.100 is below min_score"
    )
    out = draw_overlay(image, K, [item])
    legend_free = out[: H - 60]  # above the legend (bottom-left, shows the refined colour)
    assert not np.all(legend_free == REFINED_COLOR, axis=2).any()
    assert np.all(legend_free == COARSE_COLOR, axis=2).any()


def test_heat_map_brightens_only_inside_the_window(box) -> None:
    image = np.zeros((H, W, 3), np.uint8)
    T = _pose()
    window = compute_window(K, T, box.hull_vertices, size_px=64)
    attention = np.full((3, 16, 16), 1.0 / 256)
    attention[:, 8, 8] = 0.5
    out = draw_overlay(
        image, K, [OverlayItem(box, "b", T_init=None, attention=attention, window=window)]
    )
    u, v = (round(c) for c in window.center_px)
    assert out[v, u].sum() > 100  # the hot centre
    assert out[H - 1, 0].sum() == 0  # far outside the window: untouched


def test_the_label_says_what_ran_after_the_stages() -> None:
    assert refinement_label("mug") == "mug"
    assert refinement_label("mug", tracked=True) == "mug (tracked)"
    assert refinement_label("mug", method="network+align") == "mug  network+align"
    assert refinement_label("mug", align_motion_m=0.00612) == "mug  align 6.1 mm"
    both = refinement_label("mug_1", tracked=True, method="align", align_motion_m=0.0)
    assert both == "mug_1 (tracked)  align  align 0.0 mm"
