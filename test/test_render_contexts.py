"""Other OpenGL users in the same thread (a user's own pyrender code) leave our renders intact, and ours
leave theirs current.

A module of its own: pyrender's OffscreenRenderer.delete() terminates the EGL device display, which would
also end a pyrender-backend Renderer that another module keeps open in a fixture.
"""

import os

import numpy as np
import pytest

from attn6d_ros.render import Renderer
from attn6d_ros.render.egl_context import EglContext

CROP_K = np.array([[572.4, 0.0, 48.0], [0.0, 573.6, 48.0], [0.0, 0.0, 1.0]])  # a 96 px crop


def _pose(z: float) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = np.array([[0.0, -1.0, 0.0], [0.6, 0.0, -0.8], [0.8, 0.0, 0.6]])
    T[:3, 3] = [0.01, -0.005, z]
    return T


def _pyrender_box_render(size_px: int) -> None:
    """What a user's own pyrender code does: create an OffscreenRenderer, draw, delete it (its delete()
    ends with eglTerminate on the EGL device display)."""
    # Before PyOpenGL's first import, as render/__init__.py does.
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    import pyrender
    import trimesh

    scene = pyrender.Scene()
    scene.add(pyrender.Mesh.from_trimesh(trimesh.creation.box(extents=(0.1, 0.1, 0.1))))
    camera_pose = np.eye(4)
    camera_pose[2, 3] = 0.5
    scene.add(pyrender.PerspectiveCamera(yfov=1.0), pose=camera_pose)
    offscreen = pyrender.OffscreenRenderer(size_px, size_px)
    color, _ = offscreen.render(scene)
    offscreen.delete()
    assert color.any()


def test_foreign_pyrender_contexts_in_the_thread_leave_renders_intact(demo_model) -> None:
    # Issue 30: a pyrender OffscreenRenderer created, used and deleted between two of our renders
    # terminated the EGL display our context lived on; the next renders read back garbage, silently.
    with Renderer("moderngl") as ours:
        alone = ours.render(demo_model, _pose(0.6), CROP_K, 96, 96)
        for size in (64, 32):
            _pyrender_box_render(size)
            again = ours.render(demo_model, _pose(0.6), CROP_K, 96, 96)
            np.testing.assert_array_equal(again.rgb, alone.rgb)
            np.testing.assert_array_equal(again.depth, alone.depth)
    assert alone.mask.sum() > 100


def test_the_callers_context_is_current_again_after_a_render(demo_model) -> None:
    callers = EglContext()
    try:
        with Renderer("moderngl") as ours, callers:
            egl = callers._egl
            ours.render(demo_model, _pose(0.6), CROP_K, 96, 96)
            assert egl.get_current_context() == callers.context
        assert not egl.get_current_context()  # nothing was current before: nothing is now
    finally:
        callers.destroy()


def test_a_gpu_device_is_taken_when_surfaceless_falls_back_to_the_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Mesa's surfaceless display renders on llvmpipe when it finds no GPU render node; a GPU whose driver
    # serves EGL device displays only (NVIDIA) must not be passed over. Here the GPU is pretended.
    monkeypatch.setattr(EglContext, "_hardware_devices", lambda self: [0])
    context = EglContext()
    try:
        assert context.display_kind == "EGL device 0"
    finally:
        context.destroy()
    monkeypatch.setattr(EglContext, "_hardware_devices", lambda self: [])
    context = EglContext()
    try:
        assert context.display_kind == "surfaceless display"  # no GPU here: the own display
    finally:
        context.destroy()
