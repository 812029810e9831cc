"""The pyrender/EGL backend of render.Renderer (render/__init__.py sets PYOPENGL_PLATFORM first)."""

from __future__ import annotations

import numpy as np
import pyrender
import trimesh

from attn6d_ros.mesh import ObjectModel
from attn6d_ros.render.types import FAR, NEAR, Light, RenderOutput

# OpenCV camera (x right, y down, z forward) to OpenGL camera (x right, y up, z backward).
_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


def _light_node_pose(direction_cam: np.ndarray) -> np.ndarray:
    """Pose (OpenGL camera frame) of a directional light shining along -direction (towards the surface)."""
    towards_light = _CV_TO_GL[:3, :3] @ (direction_cam / np.linalg.norm(direction_cam))
    z = towards_light  # pyrender lights shine along their -z axis
    helper = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    return pose


def _delete_offscreen(renderer: pyrender.OffscreenRenderer) -> None:
    """Free the renderer's GL objects and destroy its EGL context, leaving the EGL display initialised.

    pyrender's own delete() ends with eglTerminate on the display, which is shared by every EGL
    context in the process: it would destroy a moderngl renderer's context too (its next render
    fails with "cannot create renderbuffer", or reads back a stale framebuffer).
    """
    from OpenGL.EGL import EGL_NO_CONTEXT, EGL_NO_SURFACE, eglDestroyContext, eglMakeCurrent

    platform = (
        renderer._platform
    )  # pyrender.platforms.egl.EGLPlatform (render/__init__.py selects EGL)

    def destroy_context_only() -> None:
        display, context = platform._egl_display, platform._egl_context
        eglMakeCurrent(display, EGL_NO_SURFACE, EGL_NO_SURFACE, EGL_NO_CONTEXT)
        eglDestroyContext(display, context)

    platform.delete_context = destroy_context_only
    renderer.delete()


class PyrenderBackend:
    def __init__(self) -> None:
        self._meshes: dict[int, tuple[ObjectModel, pyrender.Mesh]] = {}
        self._renderer: pyrender.OffscreenRenderer | None = None
        self._size = (0, 0)

    def describe(self) -> str:
        return f"pyrender {getattr(pyrender, '__version__', '')}/EGL"

    def _mesh(self, model: ObjectModel) -> pyrender.Mesh:
        entry = self._meshes.get(id(model))
        if entry is None:
            colors = np.hstack([model.colors, np.ones((len(model.colors), 1), np.float32)])
            tri = trimesh.Trimesh(
                model.vertices,
                model.faces,
                vertex_colors=(colors * 255).astype(np.uint8),
                vertex_normals=model.normals,
                process=False,
            )
            entry = self._meshes[id(model)] = (model, pyrender.Mesh.from_trimesh(tri, smooth=True))
        return entry[1]

    def _offscreen(self, width: int, height: int) -> pyrender.OffscreenRenderer:
        if self._renderer is None or self._size != (width, height):
            if self._renderer is not None:
                _delete_offscreen(self._renderer)
            self._renderer = pyrender.OffscreenRenderer(width, height)
            self._size = (width, height)
        return self._renderer

    def render_masks(self, scenes: list, width: int, height: int) -> np.ndarray:
        return np.stack([out.mask for out in self.render_batch(scenes, width, height, None)])

    def render_batch(
        self, scenes: list, width: int, height: int, light: Light | None
    ) -> list[RenderOutput]:
        renderer = self._offscreen(width, height)
        outputs = []
        for objects, K in scenes:
            ambient = (light.ambient,) * 3 if light is not None else (1.0, 1.0, 1.0)
            scene = pyrender.Scene(bg_color=(0.0, 0.0, 0.0, 0.0), ambient_light=ambient)
            # Half-pixel shift: pyrender puts pixel centres at half-integers, OpenCV at integers.
            camera = pyrender.IntrinsicsCamera(
                K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5, NEAR, FAR
            )
            scene.add(camera, pose=np.eye(4))
            nodes = [scene.add(self._mesh(model), pose=_CV_TO_GL @ T) for model, T in objects]
            if light is not None:
                direction = np.asarray(light.direction_cam, dtype=np.float64)
                scene.add(
                    pyrender.DirectionalLight(
                        color=np.asarray(light.color), intensity=3.0 * light.diffuse
                    ),
                    pose=_light_node_pose(direction),
                )
                flags = pyrender.RenderFlags.NONE
            else:
                flags = pyrender.RenderFlags.FLAT
            rgb, depth = renderer.render(scene, flags=flags)
            instance = np.zeros(depth.shape, np.uint8)
            if len(nodes) == 1:
                instance[depth > 0] = 1
            else:
                seg, _ = renderer.render(
                    scene,
                    flags=pyrender.RenderFlags.SEG,
                    seg_node_map={n: (i + 1,) * 3 for i, n in enumerate(nodes)},
                )
                instance = seg[:, :, 0].astype(np.uint8)
            outputs.append(
                RenderOutput(
                    rgb=np.ascontiguousarray(rgb[:, :, :3]),
                    depth=np.asarray(depth, np.float32),
                    mask=depth > 0,
                    instance=instance,
                )
            )
        return outputs

    def release(self, model: ObjectModel) -> None:
        self._meshes.pop(id(model), None)

    def close(self) -> None:
        self._meshes.clear()
        if self._renderer is not None:
            _delete_offscreen(self._renderer)
            self._renderer = None
