"""Offscreen rendering of ObjectModels: RGB, metric depth and masks, one at a time or in batches.

`Renderer` is the one interface; two backends implement it:

- ``"moderngl"`` (default): moderngl on an EGL context. Mesa's llvmpipe runs it on any CPU without a display
  or GPU; with a GPU driver it runs on the GPU. The projection is built straight from K in the vertex shader
  (no OpenGL camera, no MSAA), so silhouettes are pixel-exact against the pinhole model, and a batch is drawn
  into one atlas framebuffer with a single read-back. Measured 3-4x faster than pyrender here (README).
- ``"pyrender"``: pyrender (the maintained fork) on EGL, the renderer the product brief names. Its camera is
  the OpenGL one (y up, z backward, half-pixel offset) and its forced 4x MSAA biases depth/mask by a
  fraction of a pixel (environment.md §2).

Never OSMesa: pyrender on OSMesa leaks 1-3 MB per render (training_notes.md §2). Both backends use EGL, and
``PYOPENGL_PLATFORM`` is set (with setdefault, so a user's choice wins) before PyOpenGL is imported.

An OpenGL context belongs to the thread that created it: create and use a Renderer on one thread. The
moderngl backend keeps its context on an EGL display of its own and makes it current for every draw and
read-back, restoring the caller's afterwards (render/egl_context.py): pyrender, Open3D or a second Renderer
in the same thread neither disturb its renders nor are disturbed by them.
Models are uploaded once, on first use, and kept until `release` or the renderer is closed.
"""

from __future__ import annotations

import logging
import os
from typing import Literal

import numpy as np

from attn6d_ros.geometry import check_intrinsics, check_pose
from attn6d_ros.mesh import ObjectModel
from attn6d_ros.render.types import FAR, NEAR, Light, RenderItems, RenderOutput

log = logging.getLogger(__name__)

__all__ = ["FAR", "NEAR", "Light", "RenderItems", "RenderOutput", "Renderer"]


class Renderer:
    """Renders ObjectModels at poses ``T_cam_obj`` with pinhole intrinsics K (see geometry.py).

    Args:
        backend: "moderngl" (default), "pyrender", or "auto" (= moderngl).
        egl_device: index of the EGL device (GPU) to use; None takes the default one.
    """

    def __init__(
        self,
        backend: Literal["auto", "moderngl", "pyrender"] = "auto",
        *,
        egl_device: int | None = None,
    ) -> None:
        if backend not in ("auto", "moderngl", "pyrender"):
            raise ValueError(
                f"renderer backend must be 'auto', 'moderngl' or 'pyrender', got {backend!r}"
            )
        self.backend = "moderngl" if backend == "auto" else backend
        if self.backend == "moderngl":
            from attn6d_ros.render.moderngl_backend import ModernGLBackend

            self._impl = ModernGLBackend(egl_device)
        else:
            os.environ.setdefault("PYOPENGL_PLATFORM", "egl")  # before PyOpenGL is first imported
            from attn6d_ros.render.pyrender_backend import PyrenderBackend

            self._impl = PyrenderBackend()
        log.debug("renderer: %s", self.describe())

    def describe(self) -> str:
        """Backend and OpenGL renderer string, e.g. 'moderngl/EGL: llvmpipe (LLVM 15.0.6, 256 bits)'."""
        return self._impl.describe()

    def render(
        self,
        model: ObjectModel,
        T_cam_obj: np.ndarray,
        K: np.ndarray,
        width: int,
        height: int,
        *,
        light: Light | None = None,
    ) -> RenderOutput:
        """Renders one object into a width x height image; unlit vertex/texture colours unless ``light``."""
        return self.render_scene([(model, T_cam_obj)], K, width, height, light=light)

    def render_scene(
        self,
        objects: list[tuple[ObjectModel, np.ndarray]],
        K: np.ndarray,
        width: int,
        height: int,
        *,
        light: Light | None = None,
    ) -> RenderOutput:
        """Renders several objects into one image with occlusion (z-buffer); ``instance`` tells them apart."""
        return self.render_batch([(objects, K)], width, height, light=light)[0]

    def render_batch(
        self,
        items: RenderItems,
        width: int,
        height: int,
        *,
        light: Light | None = None,
    ) -> list[RenderOutput]:
        """Renders many images of the same size in one call.

        Args:
            items: per image either (model, T_cam_obj, K) or ([(model, T_cam_obj), ...], K).
            width, height: image size, pixels.
            light: lighting for all images, or None for unlit colours.
        """
        scenes = self._scenes(items, width, height)
        return self._impl.render_batch(scenes, int(width), int(height), light)

    def render_masks(
        self,
        items: RenderItems,
        width: int,
        height: int,
    ) -> np.ndarray:
        """(N, height, width) bool silhouettes of `items` (as render_batch), equal to its masks; faster
        (moderngl: a pass of its own, positions only, one byte per pixel, no depth test)."""
        scenes = self._scenes(items, width, height)
        if not scenes:
            return np.zeros((0, int(height), int(width)), dtype=bool)
        return self._impl.render_masks(scenes, int(width), int(height))

    @staticmethod
    def _scenes(items: RenderItems, width: int, height: int) -> list:
        """Checked ([(model, T), ...], K) scenes of render_batch's items."""
        scenes = []
        for i, item in enumerate(items):
            if len(item) == 3:
                model, T, K = item
                objects = [(model, T)]
            else:
                objects, K = item
            K = check_intrinsics(K, name=f"K of render item {i}")
            objects = [
                (m, check_pose(T, name=f"T_cam_obj of render item {i}")) for m, T in objects
            ]
            scenes.append((objects, K))
        if width < 1 or height < 1:
            raise ValueError(f"render size must be positive, got {width}x{height}")
        return scenes

    def release(self, model: ObjectModel) -> None:
        """Frees the buffers of a model uploaded earlier (no-op if it never was)."""
        self._impl.release(model)

    def close(self) -> None:
        """Frees all GPU resources and the context."""
        self._impl.close()

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
