"""The debug overlay: coarse pose outline, refined model, final-stage attention heat map and score, drawn on
the input image with numpy and PIL only (no OpenGL, no ROS).

What is drawn, per object:

- the final stage's attention as a heat map over the crop window (the mean of the three heads' maps, from
  uniform attention (transparent) to its peak), and the window's border;
- the coarse pose's silhouette outline in amber (`COARSE_COLOR`);
- the refined pose's silhouette, tinted and outlined in cyan (`REFINED_COLOR`); a refinement that failed or
  was not published is not drawn as refined: its label is red (`FAILED_COLOR`) with the reason;
- a label with the instance name, the score, what refined the pose and how far the alignment moved it
  (`refinement_label`).

Silhouettes are the mesh's triangles projected with K and filled with PIL, so they are exact up to PIL's
polygon rasterisation (about half a pixel on edges).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from attn6d_ros.crop import CropWindow
from attn6d_ros.mesh import ObjectModel

if TYPE_CHECKING:
    from attn6d_ros.ros.frame_jobs import Job

COARSE_COLOR = (255, 190, 0)  # amber
REFINED_COLOR = (0, 220, 255)  # cyan
FAILED_COLOR = (255, 60, 60)  # red
_REFINED_ALPHA = 0.35  # tint of the refined silhouette
_HEAT_ALPHA = 0.65  # opacity of the heat map where attention is highest
_NEAR = 1e-3  # metres; faces with a vertex closer than this to the camera plane are not drawn


@dataclass(frozen=True)
class OverlayItem:
    """One object to draw.

    Attributes:
        model: the object's mesh.
        label: text next to the object (instance name).
        T_init: (4, 4) coarse pose, or None when it is invalid.
        T: (4, 4) refined pose to draw as refined, or None (failed or not published).
        score: refinement score, or None.
        attention: (3, G, G) final-stage attention maps, or None.
        window: the crop window the attention refers to, or None.
        error: why the object is not drawn as refined, or None.
    """

    model: ObjectModel
    label: str
    T_init: np.ndarray | None
    T: np.ndarray | None = None
    score: float | None = None
    attention: np.ndarray | None = None
    window: CropWindow | None = None
    error: str | None = None


def refinement_label(
    name: str,
    *,
    tracked: bool = False,
    method: str = "",
    align_motion_m: float | None = None,
) -> str:
    """The overlay label of one refinement: instance name, "(tracked)", what refined it (RefinementResult
    .method, e.g. "network+align") and how far the alignment moved the model points, in mm."""
    parts = [name + (" (tracked)" if tracked else "")]
    if method:
        parts.append(method)
    if align_motion_m is not None:
        parts.append(f"align {align_motion_m * 1000.0:.1f} mm")
    return "  ".join(parts)


def job_items(jobs: list[Job], models: dict[str, ObjectModel]) -> list[OverlayItem]:
    """One OverlayItem per judged job (frame_jobs.run_frame) of an object in `models`: refined and published
    poses drawn as refined, the final stage's attention, the reported error."""
    items = []
    for job in jobs:
        if job.class_id not in models:
            continue
        result = job.result
        attention = None  # none without network stages (the alignment alone)
        if result is not None and result.attention is not None and len(result.attention):
            attention = result.attention[-1]
        items.append(
            OverlayItem(
                model=models[job.class_id],
                label=refinement_label(
                    job.instance_id,
                    tracked=job.tracked,
                    method="" if result is None else result.method,
                    align_motion_m=None if result is None else result.align_motion_m,
                ),
                T_init=job.T_init,
                T=result.T if job.published else None,
                score=None if result is None else float(result.score),
                attention=attention,
                window=None if result is None else result.window,
                error=job.reported_error,
            )
        )
    return items


def draw_overlay(image_rgb: np.ndarray, K: np.ndarray, items: list[OverlayItem]) -> np.ndarray:
    """Draws `items` on a copy of the image.

    Args:
        image_rgb: (H, W, 3) uint8 RGB image.
        K: (3, 3) intrinsics of the image.
        items: the objects of the frame.

    Returns:
        (H, W, 3) uint8 RGB overlay.
    """
    out = np.asarray(image_rgb, dtype=np.float32).copy()
    height, width = out.shape[:2]
    for item in items:  # heat maps first, so that outlines stay visible on top
        if item.attention is not None and item.window is not None:
            _blend_heatmap(out, item.attention, item.window)
    for item in items:
        if item.T is not None:
            mask = silhouette_mask(item.model, item.T, K, width, height)
            out[mask] = (
                out[mask] * (1 - _REFINED_ALPHA) + np.float32(REFINED_COLOR) * _REFINED_ALPHA
            )
            out[_outline(mask)] = REFINED_COLOR
        if item.T_init is not None:
            mask = silhouette_mask(item.model, item.T_init, K, width, height)
            out[_outline(mask)] = COARSE_COLOR
    canvas = Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    font = _font(height)
    for item in items:
        _draw_label(draw, font, item, K, width, height)
    _draw_legend(draw, font, height)
    return np.asarray(canvas)


def silhouette_mask(
    model: ObjectModel, T_cam_obj: np.ndarray, K: np.ndarray, width: int, height: int
) -> np.ndarray:
    """(H, W) bool: pixels covered by the projected mesh (faces crossing the camera plane are skipped)."""
    points = model.vertices.astype(np.float64) @ T_cam_obj[:3, :3].T + T_cam_obj[:3, 3]
    z = points[:, 2]
    faces = model.faces[np.all(z[model.faces] > _NEAR, axis=1)]
    canvas = Image.new("L", (width, height), 0)
    if len(faces) == 0:
        return np.zeros((height, width), dtype=bool)
    safe_z = np.where(z > _NEAR, z, 1.0)
    u = K[0, 0] * points[:, 0] / safe_z + K[0, 2]
    v = K[1, 1] * points[:, 1] / safe_z + K[1, 2]
    tri_u, tri_v = u[faces], v[faces]  # (F, 3)
    # Only faces whose box overlaps the image (and is not absurdly far off it) are drawn.
    visible = (
        (tri_u.max(axis=1) >= -0.5)
        & (tri_u.min(axis=1) <= width - 0.5)
        & (tri_v.max(axis=1) >= -0.5)
        & (tri_v.min(axis=1) <= height - 0.5)
    )
    draw = ImageDraw.Draw(canvas)
    limit = 4.0 * max(width, height)  # PIL coordinates must stay in a sane range
    for tu, tv in zip(tri_u[visible], tri_v[visible], strict=True):
        corners = np.clip(np.stack([tu, tv], axis=1), -limit, limit)
        draw.polygon([tuple(c) for c in corners.tolist()], fill=255)
    return np.asarray(canvas) > 0


def attention_map_on_image(
    attention: np.ndarray, window: CropWindow, width: int, height: int
) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Samples the mean attention of the heads at the image pixels under the crop window.

    Args:
        attention: (3, G, G) or (G, G) attention over the crop's feature grid (cell (i, j) covers crop pixels
            [S/G j, S/G (j + 1)) in x and likewise in y).
        window: the crop window (image pixels).
        width, height: image size.

    Returns:
        (values, (rows, cols)): values (h, w) float32 in [0, 1] for the image region image[rows, cols] inside
        the window: 0 where attention is at most uniform (1 / G^2), 1 at its peak; an empty region when the
        window misses the image.
    """
    grid = np.asarray(attention, dtype=np.float64)
    if grid.ndim == 3:
        grid = grid.mean(axis=0)
    G = grid.shape[0]
    # Relative to uniform attention (1 / G^2 per cell): at or below it is 0, the peak is 1. A network that
    # looks everywhere alike (untrained) shows no heat instead of a uniformly hot window.
    excess = grid * grid.size - 1.0
    peak = excess.max()
    grid = np.clip(excess / peak, 0.0, 1.0) if peak > 1e-6 else np.zeros_like(grid)
    S = window.size_px
    cu, cv = window.center_px
    h = window.half_size_px
    u0, u1 = max(0, int(np.ceil(cu - h))), min(width, int(np.floor(cu + h)) + 1)
    v0, v1 = max(0, int(np.ceil(cv - h))), min(height, int(np.floor(cv + h)) + 1)
    region = (slice(v0, max(v0, v1)), slice(u0, max(u0, u1)))
    if u1 <= u0 or v1 <= v0:
        return np.zeros((0, 0), dtype=np.float32), region
    A = window.image_to_crop
    cells_per_px = G / S
    # Grid coordinates of each image pixel centre, with cell centres at integers (as pixels are).
    gx = (A[0, 0] * np.arange(u0, u1) + A[0, 2] + 0.5) * cells_per_px - 0.5
    gy = (A[1, 1] * np.arange(v0, v1) + A[1, 2] + 0.5) * cells_per_px - 0.5
    gx = np.clip(gx, 0, G - 1)
    gy = np.clip(gy, 0, G - 1)
    x0 = np.minimum(np.floor(gx).astype(int), G - 2)
    y0 = np.minimum(np.floor(gy).astype(int), G - 2)
    fx = (gx - x0)[None, :]
    fy = (gy - y0)[:, None]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32), region


def heat_colors(values: np.ndarray) -> np.ndarray:
    """(..., ) values in [0, 1] -> (..., 3) float32 RGB 0..255: dark blue, magenta, orange, yellow."""
    stops = np.array([0.0, 0.35, 0.7, 1.0])
    colors = np.array([[20, 20, 120], [200, 30, 150], [255, 140, 0], [255, 255, 80]], np.float32)
    v = np.clip(values, 0.0, 1.0)
    return np.stack([np.interp(v, stops, colors[:, c]) for c in range(3)], axis=-1).astype(
        np.float32
    )


def _blend_heatmap(out: np.ndarray, attention: np.ndarray, window: CropWindow) -> None:
    height, width = out.shape[:2]
    values, region = attention_map_on_image(attention, window, width, height)
    if values.size == 0:
        return
    alpha = (_HEAT_ALPHA * np.sqrt(values))[
        :, :, None
    ]  # sqrt: weak attention stays faintly visible
    patch = out[region]
    out[region] = patch * (1 - alpha) + heat_colors(values) * alpha
    _draw_box(out, window, (255, 255, 255))


def _draw_box(out: np.ndarray, window: CropWindow, color: tuple[int, int, int]) -> None:
    height, width = out.shape[:2]
    cu, cv = window.center_px
    h = window.half_size_px
    u0, u1 = round(cu - h), round(cu + h)
    v0, v1 = round(cv - h), round(cv + h)
    cols = slice(max(u0, 0), min(u1 + 1, width))
    rows = slice(max(v0, 0), min(v1 + 1, height))
    for v in (v0, v1):
        if 0 <= v < height:
            out[v, cols] = color
    for u in (u0, u1):
        if 0 <= u < width:
            out[rows, u] = color


def _outline(mask: np.ndarray) -> np.ndarray:
    """A two-pixel boundary of a mask (mask minus its erosion, dilated once)."""
    if not mask.any():
        return mask
    image = Image.fromarray(mask.astype(np.uint8) * 255)
    eroded = np.asarray(image.filter(ImageFilter.MinFilter(3))) > 0
    edge = mask & ~eroded
    return (
        np.asarray(Image.fromarray(edge.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(3)))
        > 0
    )


def _font(height: int) -> ImageFont.ImageFont:
    size = max(12, height // 32)
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _draw_label(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.ImageFont,
    item: OverlayItem,
    K: np.ndarray,
    width: int,
    height: int,
) -> None:
    if item.window is not None:
        u = item.window.center_px[0] - item.window.half_size_px
        v = item.window.center_px[1] - item.window.half_size_px
    elif item.T_init is not None and item.T_init[2, 3] > _NEAR:
        u = K[0, 0] * item.T_init[0, 3] / item.T_init[2, 3] + K[0, 2]
        v = K[1, 1] * item.T_init[1, 3] / item.T_init[2, 3] + K[1, 2]
    else:
        u, v = 4.0, height - 40.0
    text = item.label if item.score is None else f"{item.label}  score {item.score:.2f}"
    color = REFINED_COLOR
    if item.error:
        reason = item.error if len(item.error) <= 90 else item.error[:87] + "..."
        text = f"{text}\n{reason}"
        color = FAILED_COLOR
    u = float(np.clip(u, 2, max(2, width - 200)))
    v = float(np.clip(v - 2 * font_height(font), 2, max(2, height - 3 * font_height(font))))
    box = draw.multiline_textbbox((u, v), text, font=font)
    draw.rectangle(box, fill=(0, 0, 0))
    draw.multiline_text((u, v), text, fill=color, font=font)


def _draw_legend(draw: ImageDraw.ImageDraw, font: ImageFont.ImageFont, height: int) -> None:
    """Bottom-left, out of the way of the labels (drawn above each object's window)."""
    step = font_height(font) + 4
    x, y = 6, height - 3 * step - 2
    for text, color in (
        ("coarse pose", COARSE_COLOR),
        ("refined pose", REFINED_COLOR),
        ("attention (final stage)", (255, 140, 0)),
    ):
        box = draw.textbbox((x + 16, y), text, font=font)
        draw.rectangle((x - 2, y - 2, box[2] + 2, box[3] + 2), fill=(0, 0, 0))
        draw.rectangle((x, y + 2, x + 10, y + 12), fill=color)
        draw.text((x + 16, y), text, fill=(255, 255, 255), font=font)
        y += step


def font_height(font: ImageFont.ImageFont) -> int:
    box = font.getbbox("Ag")
    return int(box[3] - box[1]) + 2
