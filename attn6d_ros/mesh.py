"""Object meshes: loading in any unit, colours, diameter and a fixed point sample (ObjectModel)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist

log = logging.getLogger(__name__)

UNIT_SCALE = {"m": 1.0, "cm": 0.01, "mm": 0.001}
# Plausible object sizes for a tabletop pose refiner; outside them the unit is almost surely wrong.
MIN_DIAMETER = 0.005  # metres
MAX_DIAMETER = 3.0  # metres
MAX_POINTS = 1000  # size of ObjectModel.points, the sample used by losses and metrics
NEUTRAL_COLOR = (0.7, 0.7, 0.7)  # for meshes without colour (STL)


@dataclass(frozen=True, eq=False)
class ObjectModel:
    """A rigid object in its own frame (metres), ready for rendering, losses and metrics.

    Attributes:
        vertices: (V, 3) float32 vertex positions, metres.
        faces: (F, 3) int32 vertex indices.
        colors: (V, 3) float32 per-vertex RGB in [0, 1] (sampled from the texture for textured meshes).
        normals: (V, 3) float32 unit vertex normals, for lit rendering.
        diameter: largest distance between two vertices, metres.
        points: (P, 3) float64 fixed surface sample (P <= 1000, farthest-point spread, deterministic).
        symmetric: use symmetry-aware losses and metrics (closest-point ADD-S).
        name: a label for messages (the file name by default).
        uv: (V, 2) float32 texture coordinates, or None.
        texture: (H, W, 3) uint8 texture image, or None.
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    normals: np.ndarray
    diameter: float
    points: np.ndarray
    symmetric: bool = False
    name: str = ""
    uv: np.ndarray | None = None
    texture: np.ndarray | None = None
    hull_vertices: np.ndarray = field(default=None, repr=False)  # (H, 3) extreme points, for crops

    @property
    def bounds(self) -> np.ndarray:
        """(2, 3) axis-aligned box of the vertices in the object frame, metres: [min, max]."""
        return np.stack([self.vertices.min(axis=0), self.vertices.max(axis=0)]).astype(np.float64)

    @property
    def extent(self) -> np.ndarray:
        """(3,) side lengths of the axis-aligned box, metres."""
        b = self.bounds
        return b[1] - b[0]


def load_mesh(
    path: str | Path, units: str = "m", *, symmetric: bool = False, name: str | None = None
) -> ObjectModel:
    """Loads a mesh file (PLY with vertex colours, OBJ/GLB with textures, STL, ...) as an ObjectModel.

    Args:
        path: mesh file.
        units: the unit the file's coordinates are in: "m", "cm" or "mm".
        symmetric: mark the object symmetric (ADD-S, symmetric loss).
        name: label used in messages; defaults to the file stem.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown units, a file without triangles, or a diameter outside 5 mm - 3 m (which
            suggests the wrong ``units``).
    """
    path = Path(path)
    if units not in UNIT_SCALE:
        raise ValueError(f"units must be one of {tuple(UNIT_SCALE)}, got {units!r} (mesh {path})")
    if not path.is_file():
        raise FileNotFoundError(f"mesh file not found: {path}")
    try:
        # process=False keeps split vertices with their own colours (LineMOD's *_color_4000.ply).
        loaded = trimesh.load(path, process=False)
    except Exception as exc:  # trimesh raises many types for unreadable files
        raise ValueError(f"cannot read mesh {path}: {exc}") from exc
    mesh = _single_mesh(loaded, path)
    vertices = np.asarray(mesh.vertices, dtype=np.float64) * UNIT_SCALE[units]
    colors, uv, texture = _colors(mesh)
    return model_from_arrays(
        vertices,
        np.asarray(mesh.faces),
        colors,
        symmetric=symmetric,
        name=name or path.stem,
        uv=uv,
        texture=texture,
        units_hint=units,
    )


def model_from_arrays(
    vertices: np.ndarray,
    faces: np.ndarray,
    colors: np.ndarray | None = None,
    *,
    symmetric: bool = False,
    name: str = "object",
    uv: np.ndarray | None = None,
    texture: np.ndarray | None = None,
    units_hint: str = "m",
) -> ObjectModel:
    """Builds an ObjectModel from vertices (metres), faces and optional per-vertex RGB in [0, 1]."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) < 3:
        raise ValueError(f"mesh {name!r} has no usable vertices (shape {vertices.shape})")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise ValueError(f"mesh {name!r} has no triangles (faces shape {faces.shape})")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f"mesh {name!r} has face indices outside [0, {len(vertices) - 1}]")
    if not np.all(np.isfinite(vertices)):
        raise ValueError(f"mesh {name!r} has non-finite vertex coordinates")
    hull = _hull_points(vertices)
    diameter = float(pdist(hull).max())
    _check_diameter(diameter, name, units_hint)
    if colors is None:
        colors = np.tile(np.asarray(NEUTRAL_COLOR), (len(vertices), 1))
    tri = trimesh.Trimesh(vertices, faces, process=False)
    normals = np.asarray(tri.vertex_normals, dtype=np.float32)
    return ObjectModel(
        vertices=vertices.astype(np.float32),
        faces=faces.astype(np.int32),
        colors=np.clip(np.asarray(colors, dtype=np.float32), 0.0, 1.0),
        normals=normals,
        diameter=diameter,
        points=_sample_points(tri),
        symmetric=bool(symmetric),
        name=name,
        uv=None if uv is None else np.asarray(uv, dtype=np.float32),
        texture=texture,
        hull_vertices=hull,
    )


def _single_mesh(loaded: object, path: Path) -> trimesh.Trimesh:
    if isinstance(loaded, trimesh.Scene):
        geometries = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh) and len(g.faces)]
        if not geometries:
            raise ValueError(f"mesh {path} has no triangles")
        if len(geometries) == 1:
            return geometries[0]
        # Several parts with their own materials: bake each part's texture into vertex colours.
        for g in geometries:
            if isinstance(g.visual, trimesh.visual.TextureVisuals):
                g.visual = g.visual.to_color()
        return trimesh.util.concatenate(geometries)
    if not isinstance(loaded, trimesh.Trimesh) or len(getattr(loaded, "faces", [])) == 0:
        raise ValueError(f"mesh {path} has no triangles (a point cloud or an empty file?)")
    return loaded


def _colors(
    mesh: trimesh.Trimesh,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Per-vertex RGB in [0, 1], plus UVs and texture image when the mesh is textured."""
    visual = mesh.visual
    if isinstance(visual, trimesh.visual.TextureVisuals):
        image = getattr(visual.material, "image", None)
        if image is None:
            image = getattr(visual.material, "baseColorTexture", None)
        if image is not None and visual.uv is not None:
            texture = np.asarray(image.convert("RGB"), dtype=np.uint8)
            colors = visual.to_color().vertex_colors[:, :3] / 255.0
            return colors, np.asarray(visual.uv, dtype=np.float32), texture
        return None, None, None
    if visual.kind == "vertex":
        return np.asarray(visual.vertex_colors)[:, :3] / 255.0, None, None
    if visual.kind == "face":
        # Face colours: give every vertex the colour of a face that uses it.
        colors = np.zeros((len(mesh.vertices), 3))
        colors[mesh.faces.reshape(-1)] = np.repeat(
            np.asarray(visual.face_colors)[:, :3] / 255.0, 3, 0
        )
        return colors, None, None
    return None, None, None


def _hull_points(vertices: np.ndarray) -> np.ndarray:
    """The extreme vertices: enough for diameters and projected extents, far fewer than all."""
    unique = np.unique(vertices, axis=0)
    try:
        return unique[ConvexHull(unique).vertices]
    except Exception:  # flat or degenerate meshes: scipy's Qhull raises QhullError
        return unique


def _check_diameter(diameter: float, name: str, units: str) -> None:
    if MIN_DIAMETER <= diameter <= MAX_DIAMETER:
        return
    guesses = []
    for other, scale in UNIT_SCALE.items():
        converted = diameter / UNIT_SCALE[units] * scale
        if other != units and MIN_DIAMETER <= converted <= MAX_DIAMETER:
            guesses.append(f"units={other!r} (diameter {converted:.3g} m)")
    hint = f"; is it in another unit? Try {' or '.join(guesses)}" if guesses else ""
    raise ValueError(
        f"mesh {name!r} has a diameter of {diameter:.4g} m with units={units!r}, outside the plausible "
        f"{MIN_DIAMETER}-{MAX_DIAMETER} m{hint}"
    )


def _sample_points(mesh: trimesh.Trimesh, count: int = MAX_POINTS) -> np.ndarray:
    """A deterministic, evenly spread surface sample: dense random surface points thinned by
    farthest-point sampling from the point nearest the centroid."""
    dense, _ = trimesh.sample.sample_surface(mesh, 8 * count, seed=0)
    dense = np.concatenate([np.asarray(dense), np.unique(mesh.vertices, axis=0)])
    if len(dense) <= count:
        return dense.astype(np.float64)
    chosen = np.empty(count, dtype=np.int64)
    chosen[0] = np.argmin(np.linalg.norm(dense - dense.mean(axis=0), axis=1))
    dist = np.linalg.norm(dense - dense[chosen[0]], axis=1)
    for i in range(1, count):
        chosen[i] = np.argmax(dist)
        dist = np.minimum(dist, np.linalg.norm(dense - dense[chosen[i]], axis=1))
    return dense[chosen].astype(np.float64)
