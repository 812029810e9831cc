"""Viewpoint templates of the region-based alignment: contour points of an object seen from a geodesic sphere
of viewpoints, built once per mesh and cached on disk (the sparse viewpoint model of Stoiber et al., RBGT
ACCV 2020 / SRT3D IJCV 2022; written from the papers' descriptions).

For every viewpoint (a vertex of a subdivided icosahedron around the object's origin), the object's silhouette
and depth are rendered once with a virtual camera looking at the origin from ``distance_m``. From the outline
of that silhouette ``points_per_view`` pixels are drawn (spread along the outline), and for each we keep, in
the object frame: the 3D surface point on the outline, the outline's outward normal (a direction orthogonal
to the viewing ray), and how far the silhouette continues inwards (foreground) and stays empty outwards
(background) along that normal, in metres at the template's distance. At run time the viewpoint nearest to
the current camera direction gives the contour to project; no rendering is needed.

Cache: one ``.npz`` file per mesh and template setting, named by a hash of the mesh's vertices, faces and
the settings, under ``cache_dir`` (default: ``$ATTN6D_CACHE_DIR``, else ``$XDG_CACHE_HOME/attn6d_ros``, else
``~/.cache/attn6d_ros``), in ``align_templates/``. A changed mesh hashes differently, so it is rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import trimesh
from scipy import ndimage

from attn6d_ros.mesh import ObjectModel
from attn6d_ros.render import Renderer

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # bump when what a template file holds changes: old files are then rebuilt
_RENDER_CHUNK = 64  # views per render_batch call (one atlas read-back each)


@dataclass(frozen=True)
class TemplateConfig:
    """How the viewpoint templates are built (part of the cache key).

    Attributes:
        subdivisions: icosahedron subdivisions of the viewpoint sphere: 10 * 4**k + 2 views (4: 2562 views,
            about 4 degrees apart, as in RBGT).
        points_per_view: contour points kept per view (RBGT: 200).
        image_px: side of the square template image, pixels (the object spans ~90 % of it).
        distance_m: distance of the template camera from the object's origin, metres (raised to 2.5 times
            the object's radius about its origin when smaller).
        seed: seed of the choice of contour points (templates are deterministic).
    """

    subdivisions: int = 4
    points_per_view: int = 200
    image_px: int = 400
    distance_m: float = 0.8
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low, high in (("subdivisions", 0, 6), ("points_per_view", 8, 2000),
                                ("image_px", 64, 2048), ("seed", 0, 2**31 - 1)):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(
                    f"TemplateConfig.{name} must be an integer in [{low}, {high}], got {value!r}"
                )
        if not 0.01 <= self.distance_m <= 100.0:
            raise ValueError(
                f"TemplateConfig.distance_m must be in [0.01, 100] m, got {self.distance_m!r}"
            )


@dataclass(frozen=True)
class ViewTemplates:
    """Contour points of one object from every viewpoint, object frame.

    Attributes:
        directions: (V, 3) float64 unit vectors from the object's origin towards each template camera.
        points: (V, N, 3) float32 contour points, metres.
        normals: (V, N, 3) float32 unit outward normals of the contour (orthogonal to the view direction).
        foreground_m: (V, N) float32 how far the silhouette continues inwards along -normal, metres at the
            template distance (capped at half the template image's side).
        background_m: (V, N) float32 how far it stays empty outwards along +normal, metres (capped alike).
        valid: (V, N) bool, False for padding where a view had fewer outline pixels than N.
        key: the cache key (mesh and settings hash).
    """

    directions: np.ndarray
    points: np.ndarray
    normals: np.ndarray
    foreground_m: np.ndarray
    background_m: np.ndarray
    valid: np.ndarray
    key: str

    def nearest_view(self, T_cam_obj: np.ndarray) -> int:
        """Index of the template whose camera direction is nearest to the camera's, seen from the object
        at pose ``T_cam_obj`` (4x4)."""
        R, t = T_cam_obj[:3, :3], T_cam_obj[:3, 3]
        towards_camera = -(R.T @ t)
        return int(np.argmax(self.directions @ towards_camera))


def default_cache_dir() -> Path:
    """$ATTN6D_CACHE_DIR, else $XDG_CACHE_HOME/attn6d_ros, else ~/.cache/attn6d_ros."""
    explicit = os.environ.get("ATTN6D_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "attn6d_ros"


def template_key(model: ObjectModel, cfg: TemplateConfig) -> str:
    """Hash of the mesh geometry and the template settings (hex, 24 characters)."""
    digest = hashlib.sha256()
    digest.update(f"v{FORMAT_VERSION}".encode())
    digest.update(np.ascontiguousarray(model.vertices, dtype=np.float32).tobytes())
    digest.update(np.ascontiguousarray(model.faces, dtype=np.int32).tobytes())
    digest.update(repr(sorted(asdict(cfg).items())).encode())
    return digest.hexdigest()[:24]


def load_or_build_templates(
    model: ObjectModel,
    cfg: TemplateConfig | None = None,
    *,
    renderer: Renderer | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[ViewTemplates, bool]:
    """The object's templates from the cache, or built (and cached) when missing or unreadable.

    Args:
        model: the object.
        cfg: template settings (default TemplateConfig()).
        renderer: renders the views when they must be built; a temporary one is created if None.
        cache_dir: where template files live (default: default_cache_dir()).

    Returns:
        (templates, built): ``built`` is False when they came from the cache.
    """
    cfg = cfg or TemplateConfig()
    key = template_key(model, cfg)
    path = Path(cache_dir or default_cache_dir()) / "align_templates" / f"{key}.npz"
    if path.is_file():
        try:
            return _load(path, key), False
        except (OSError, ValueError, KeyError) as exc:
            log.warning("align templates %s unreadable (%s): rebuilding", path, exc)
    tic = time.perf_counter()
    own = renderer is None
    renderer = renderer or Renderer()
    try:
        templates = build_templates(model, cfg, renderer, key=key)
    finally:
        if own:
            renderer.close()
    log.info("built %d align templates of %r in %.1f s -> %s", len(templates.directions),
             model.name, time.perf_counter() - tic, path)  # fmt: skip
    try:
        _save(path, templates)
    except OSError as exc:  # a read-only cache costs start-up time, not correctness
        log.warning("cannot cache align templates at %s: %s", path, exc)
    return templates, True


def build_templates(
    model: ObjectModel, cfg: TemplateConfig, renderer: Renderer, *, key: str = ""
) -> ViewTemplates:
    """Renders every viewpoint and extracts its contour points (module docstring)."""
    directions = np.asarray(
        trimesh.creation.icosphere(subdivisions=cfg.subdivisions).vertices, dtype=np.float64
    )
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    # The radius about the origin (not the centre): the template cameras look at the origin.
    radius = float(np.linalg.norm(model.vertices, axis=1).max())
    distance = max(cfg.distance_m, 2.5 * radius)
    S = cfg.image_px
    # Every vertex projects within 45 % of the side from the centre (the nearest ones project largest).
    focal = 0.45 * S * (distance - radius) / radius
    K = np.array([[focal, 0.0, (S - 1) / 2.0], [0.0, focal, (S - 1) / 2.0], [0.0, 0.0, 1.0]])
    poses = [_look_at_origin(d, distance) for d in directions]
    n_views, n = len(directions), cfg.points_per_view
    points = np.zeros((n_views, n, 3), np.float32)
    normals = np.zeros((n_views, n, 3), np.float32)
    foreground = np.zeros((n_views, n), np.float32)
    background = np.zeros((n_views, n), np.float32)
    valid = np.zeros((n_views, n), bool)
    rng = np.random.default_rng(cfg.seed)
    for start in range(0, n_views, _RENDER_CHUNK):
        chunk = poses[start : start + _RENDER_CHUNK]
        renders = renderer.render_batch([(model, T, K) for T in chunk], S, S)
        for j, (T, out) in enumerate(zip(chunk, renders, strict=True)):
            view = _contour_points(out.mask, out.depth, K, n, rng)
            if view is None:
                continue
            uv, depth, normal_2d, fg_px, bg_px = view
            m = len(uv)
            i = start + j
            points_cam = np.column_stack(
                [(uv[:, 0] - K[0, 2]) / focal * depth, (uv[:, 1] - K[1, 2]) / focal * depth, depth]
            )
            R, t = T[:3, :3], T[:3, 3]
            points[i, :m] = (points_cam - t) @ R  # R^T (p - t)
            normals[i, :m] = np.column_stack([normal_2d, np.zeros(m)]) @ R
            foreground[i, :m] = fg_px * depth / focal
            background[i, :m] = bg_px * depth / focal
            valid[i, :m] = True
    if not valid.any():
        raise ValueError(f"object {model.name!r}: no silhouette in any template view")
    return ViewTemplates(directions, points, normals, foreground, background, valid, key)


def _look_at_origin(direction: np.ndarray, distance: float) -> np.ndarray:
    """T_cam_obj of a camera at ``distance * direction`` (object frame) looking at the origin."""
    z = -direction  # the camera's optical axis, object frame
    helper = np.array([0.0, 0.0, 1.0]) if abs(z[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z])  # rows: camera axes in the object frame
    T[:3, 3] = [0.0, 0.0, distance]
    return T


def _contour_points(
    mask: np.ndarray, depth: np.ndarray, K: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, ...] | None:
    """Up to ``n`` outline points of a silhouette: (uv (M, 2) px on the outline, depth (M,) m, outward
    normals (M, 2), foreground and background run lengths (M,) px); None without an outline."""
    edge = mask & ~ndimage.binary_erosion(mask)
    rows, cols = np.nonzero(edge)
    if len(rows) < 3:
        return None
    # A random subset of the outline pixels: spread evenly along the outline in expectation (RBGT).
    order = rng.permutation(len(rows))[: min(n, len(rows))]
    rows, cols = rows[order], cols[order]
    smooth = np.pad(ndimage.gaussian_filter(mask.astype(np.float32), 1.5), 1, mode="edge")
    r, c = rows + 1, cols + 1  # central differences of the smoothed mask at the points only
    g = 0.5 * np.column_stack(
        [smooth[r, c + 1] - smooth[r, c - 1], smooth[r + 1, c] - smooth[r - 1, c]]
    )
    g = g.astype(np.float64)
    norm = np.linalg.norm(g, axis=1)
    keep = norm > 1e-6
    rows, cols, g, norm = rows[keep], cols[keep], g[keep], norm[keep]
    normal = -g / norm[:, None]  # outward: the mask falls along it
    centre = np.column_stack([cols, rows]).astype(np.float64)
    # The outline lies half a pixel outside the last object pixel's centre.
    uv = centre + 0.5 * normal
    fg = _run_length(mask, centre, -normal, inside=True) + 0.5
    bg = _run_length(mask, centre + normal, normal, inside=False) + 0.5
    return uv, depth[rows, cols].astype(np.float64), normal, fg, bg


def _run_length(
    mask: np.ndarray, start: np.ndarray, step: np.ndarray, *, inside: bool
) -> np.ndarray:
    """(M,) pixels walked from ``start`` along unit ``step`` while the mask stays ``inside`` (True: on the
    object), capped at half the image's side (longer runs never matter to a line); a walk that leaves the
    image counts as never ending."""
    H, W = mask.shape
    limit = max(H, W) // 2
    k = np.arange(1, limit + 1, dtype=np.float32)
    u = np.rint(start[:, 0:1] + k * step[:, 0:1]).astype(np.int32)  # (M, limit)
    v = np.rint(start[:, 1:2] + k * step[:, 1:2]).astype(np.int32)
    out = (u < 0) | (u >= W) | (v < 0) | (v >= H)
    changed = (mask[np.clip(v, 0, H - 1), np.clip(u, 0, W - 1)] != inside) & ~out
    stop = changed | out
    first = np.argmax(
        stop, axis=1
    )  # the first step that changes or leaves (0 also when none does)
    ended = changed[np.arange(len(start)), first]
    return np.where(ended, first.astype(np.float64), float(limit))


def _save(path: Path, templates: ViewTemplates) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written to a temporary file and renamed, so a concurrent reader never sees half a file.
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
        np.savez(
            handle,
            version=FORMAT_VERSION,
            directions=templates.directions,
            points=templates.points,
            normals=templates.normals,
            foreground_m=templates.foreground_m,
            background_m=templates.background_m,
            valid=templates.valid,
        )
    os.replace(handle.name, path)


def _load(path: Path, key: str) -> ViewTemplates:
    with np.load(path) as data:
        if int(data["version"]) != FORMAT_VERSION:
            raise ValueError(f"format version {int(data['version'])}, expected {FORMAT_VERSION}")
        return ViewTemplates(
            directions=data["directions"],
            points=data["points"],
            normals=data["normals"],
            foreground_m=data["foreground_m"],
            background_m=data["background_m"],
            valid=data["valid"],
            key=key,
        )
