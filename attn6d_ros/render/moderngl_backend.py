"""moderngl/EGL backend of render.Renderer: pinhole projection in the vertex shader, batched atlases."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import moderngl
import numpy as np

from attn6d_ros.mesh import ObjectModel
from attn6d_ros.render.egl_context import EglContext
from attn6d_ros.render.types import FAR, NEAR, Light, RenderOutput

# clip = (2 fx X / W + (2 (cx + 0.5) / W - 1) Z, same for y, perspective z, Z): pixel centres land on integer
# (u, v) as in OpenCV, and framebuffer row 0 is image row 0 (so the winding is mirrored: culling stays off).
_PROJECTION = """
#version 330
uniform mat3 R;
uniform vec3 t;
uniform vec4 proj;      // fx, fy, cx, cy (pixels)
uniform vec2 size;      // width, height (pixels)
uniform vec2 near_far;  // metres
vec4 project(vec3 p) {  // camera frame (metres) to clip coordinates
    float n = near_far.x;
    float f = near_far.y;
    return vec4(
        2.0 * proj.x / size.x * p.x + (2.0 * (proj.z + 0.5) / size.x - 1.0) * p.z,
        2.0 * proj.y / size.y * p.y + (2.0 * (proj.w + 0.5) / size.y - 1.0) * p.z,
        (f + n) / (f - n) * p.z - 2.0 * f * n / (f - n),
        p.z);
}
"""

_VERTEX_SHADER = (
    _PROJECTION
    + """
in vec3 in_pos;
in vec3 in_color;
in vec3 in_normal;
in vec2 in_uv;
out vec3 v_pos;
out vec3 v_color;
out vec3 v_normal;
out vec2 v_uv;
void main() {
    vec3 p = R * in_pos + t;
    v_pos = p;
    v_color = in_color;
    v_normal = R * in_normal;
    v_uv = in_uv;
    gl_Position = project(p);
}
"""
)

_FRAGMENT_SHADER = """
#version 330
uniform bool lit;
uniform vec3 light_dir;    // towards the light, camera frame
uniform vec3 light_color;
uniform vec4 phong;        // ambient, diffuse, specular, shininess
uniform bool use_texture;
uniform sampler2D tex;
uniform float instance;
in vec3 v_pos;
in vec3 v_color;
in vec3 v_normal;
in vec2 v_uv;
layout(location = 0) out vec4 out_color;
layout(location = 1) out vec2 out_depth_instance;
void main() {
    vec3 albedo = use_texture ? texture(tex, v_uv).rgb : v_color;
    vec3 c = albedo;
    if (lit) {
        vec3 n = normalize(v_normal);
        vec3 v = normalize(-v_pos);
        if (dot(n, v) < 0.0) n = -n;  // two-sided: meshes with flipped normals still light up
        vec3 l = normalize(light_dir);
        float diffuse = max(dot(n, l), 0.0);
        float specular = pow(max(dot(reflect(-l, n), v), 0.0), phong.w);
        c = (albedo * (phong.x + phong.y * diffuse) + phong.z * specular) * light_color;
    }
    out_color = vec4(clamp(c, 0.0, 1.0), 1.0);
    out_depth_instance = vec2(v_pos.z, instance);
}
"""

# Silhouettes only (render_masks): positions in, one byte out, no depth test (a mask is the union of its
# objects): on llvmpipe half the time of the full pass for an atlas of 12 silhouettes of 96 px.
_MASK_VERTEX_SHADER = (
    _PROJECTION
    + """
in vec3 in_pos;
void main() {
    gl_Position = project(R * in_pos + t);
}
"""
)

_MASK_FRAGMENT_SHADER = """
#version 330
layout(location = 0) out float out_mask;
void main() {
    out_mask = 1.0;
}
"""

_MAX_ATLAS_SIDE = (
    8192  # pixels; llvmpipe and every desktop GPU support at least this framebuffer size
)
# Atlas framebuffers kept for reuse (least recently used beyond are freed). Each distinct batch shape and
# image size has its own; a full-frame 4000x3000 render alone holds 190 MB, so an unbounded cache grew
# with every new size a node saw (issue 30). A refinement cycles through a handful of shapes.
_MAX_FRAMEBUFFERS = 8


class _GpuModel:
    """Vertex/index buffers (and texture) of one model in one context."""

    def __init__(
        self,
        ctx: moderngl.Context,
        program: moderngl.Program,
        mask_program: moderngl.Program,
        model: ObjectModel,
    ) -> None:
        n = len(model.vertices)
        uv = model.uv if model.uv is not None else np.zeros((n, 2), np.float32)
        data = np.hstack([model.vertices, model.colors, model.normals, uv]).astype("f4")
        self.model = model  # keeps id(model) from being reused while cached
        self.vbo = ctx.buffer(data.tobytes())
        self.ibo = ctx.buffer(model.faces.astype("i4").tobytes())
        self.vao = ctx.vertex_array(
            program,
            [(self.vbo, "3f 3f 3f 2f", "in_pos", "in_color", "in_normal", "in_uv")],
            index_buffer=self.ibo,
            index_element_size=4,
        )
        self.mask_vao = ctx.vertex_array(  # positions only: skip colour, normal and uv (32 bytes)
            mask_program,
            [(self.vbo, "3f 32x", "in_pos")],
            index_buffer=self.ibo,
            index_element_size=4,
        )
        self.texture = None
        if model.texture is not None:
            image = np.ascontiguousarray(
                np.flipud(model.texture)
            )  # GL textures start at the bottom row
            self.texture = ctx.texture((image.shape[1], image.shape[0]), 3, image.tobytes())
            self.texture.build_mipmaps()

    def release(self) -> None:
        for obj in (self.vao, self.mask_vao, self.vbo, self.ibo, self.texture):
            if obj is not None:
                obj.release()


class ModernGLBackend:
    """Renders with moderngl on an EGL context of its own (egl_context.py), made current for every draw
    and read-back and the caller's context restored afterwards, so that other OpenGL users in the thread
    (pyrender, a second Renderer) neither disturb nor are disturbed by it."""

    def __init__(self, egl_device: int | None = None) -> None:
        try:
            self._egl = EglContext(egl_device)
            with self._egl:
                moderngl.init_context(loader=self._egl)  # moderngl on our (current) context
                self.ctx = moderngl.get_context()
        except Exception as exc:  # moderngl raises plain Exceptions
            raise RuntimeError(
                f"cannot create an EGL OpenGL context ({exc}); install Mesa's EGL "
                "(Debian: libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1) or a GPU driver with EGL"
            ) from exc
        with self._egl:
            self.program = self.ctx.program(
                vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER
            )
            self.program["near_far"].value = (NEAR, FAR)
            self.mask_program = self.ctx.program(
                vertex_shader=_MASK_VERTEX_SHADER, fragment_shader=_MASK_FRAGMENT_SHADER
            )
            self.mask_program["near_far"].value = (NEAR, FAR)
            self.ctx.enable(moderngl.DEPTH_TEST)
            self.ctx.disable(moderngl.CULL_FACE)
            self._renderer_name = self.ctx.info["GL_RENDERER"]
        self._models: dict[int, _GpuModel] = {}
        self._fbos: OrderedDict[tuple[int, int, bool], tuple[moderngl.Framebuffer, list]] = (
            OrderedDict()
        )

    def describe(self) -> str:
        return f"moderngl/EGL ({self._egl.display_kind}): {self._renderer_name}"

    def _gpu_model(self, model: ObjectModel) -> _GpuModel:
        gpu = self._models.get(id(model))
        if gpu is None:
            gpu = self._models[id(model)] = _GpuModel(
                self.ctx, self.program, self.mask_program, model
            )
        return gpu

    def _framebuffer(self, width: int, height: int, masks: bool = False) -> moderngl.Framebuffer:
        """The atlas framebuffer of that size: colour, depth-and-instance and depth attachments, or
        (``masks``) one byte per pixel."""
        key = (width, height, masks)
        entry = self._fbos.get(key)
        if entry is not None:
            self._fbos.move_to_end(key)
        else:
            if masks:
                attachments = [self.ctx.renderbuffer((width, height), 1, dtype="f1")]
                fbo = self.ctx.framebuffer(color_attachments=attachments)
            else:
                attachments = [
                    self.ctx.renderbuffer((width, height), 4),
                    self.ctx.renderbuffer((width, height), 2, dtype="f4"),
                    self.ctx.depth_renderbuffer((width, height)),
                ]
                fbo = self.ctx.framebuffer(
                    color_attachments=attachments[:2], depth_attachment=attachments[2]
                )
            entry = self._fbos[key] = (fbo, attachments)
            while len(self._fbos) > _MAX_FRAMEBUFFERS:
                _, (old_fbo, old_attachments) = self._fbos.popitem(last=False)
                _release_framebuffer(old_fbo, old_attachments)
        return entry[0]

    def render_masks(self, scenes: list, width: int, height: int) -> np.ndarray:
        def draw(chunk: list, cols: int) -> moderngl.Framebuffer:
            return self._draw_masks(chunk, width, height, cols)

        return np.stack(self._render(scenes, width, height, draw, self._read_masks))

    def render_batch(
        self, scenes: list, width: int, height: int, light: Light | None
    ) -> list[RenderOutput]:
        def draw(chunk: list, cols: int) -> moderngl.Framebuffer:
            return self._draw_atlas(chunk, width, height, cols, light)

        return self._render(scenes, width, height, draw, self._read_outputs)

    def _render(
        self, scenes: list, width: int, height: int, draw: Callable, read: Callable
    ) -> list:
        """Draws `scenes` into as few atlases as fit with ``draw(chunk, cols)`` (the atlas framebuffer)
        and reads each back with ``read(fbo, count, width, height, cols)`` (a list per atlas)."""
        cols = max(
            1, min(len(scenes), _MAX_ATLAS_SIDE // width, math.ceil(math.sqrt(len(scenes))))
        )
        rows_max = max(1, _MAX_ATLAS_SIDE // height)
        per_atlas = cols * rows_max
        outputs: list = []
        # Our context must be current: another renderer in this thread may have made its own current.
        with self._egl:
            for start in range(0, len(scenes), per_atlas):
                chunk = scenes[start : start + per_atlas]
                fbo = draw(chunk, cols)
                outputs += read(fbo, len(chunk), width, height, cols)
        return outputs

    def _draw_atlas(
        self, scenes: list, width: int, height: int, cols: int, light: Light | None
    ) -> moderngl.Framebuffer:
        """Draws `scenes` into the tiles of one atlas framebuffer (row-major, `cols` per row)."""
        rows = math.ceil(len(scenes) / cols)
        fbo = self._framebuffer(cols * width, rows * height)
        fbo.use()
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        prog = self.program
        prog["size"].value = (float(width), float(height))
        prog["lit"].value = light is not None
        if light is not None:
            direction = np.asarray(light.direction_cam, dtype=np.float64)
            prog["light_dir"].value = tuple(direction / np.linalg.norm(direction))
            prog["light_color"].value = tuple(float(c) for c in light.color)
            prog["phong"].value = (light.ambient, light.diffuse, light.specular, light.shininess)
        for index, (objects, K) in enumerate(scenes):
            col, row = index % cols, index // cols
            fbo.viewport = (col * width, row * height, width, height)
            prog["proj"].value = (K[0, 0], K[1, 1], K[0, 2], K[1, 2])
            for instance, (model, T) in enumerate(objects, start=1):
                gpu = self._gpu_model(model)
                prog["R"].write(
                    np.ascontiguousarray(T[:3, :3].T, dtype="f4").tobytes()
                )  # column-major
                prog["t"].value = tuple(float(x) for x in T[:3, 3])
                prog["instance"].value = float(instance)
                prog["use_texture"].value = gpu.texture is not None
                if gpu.texture is not None:
                    gpu.texture.use(0)
                    prog["tex"].value = 0
                gpu.vao.render(moderngl.TRIANGLES)
        return fbo

    def _draw_masks(
        self, scenes: list, width: int, height: int, cols: int
    ) -> moderngl.Framebuffer:
        """Draws the silhouettes of `scenes` into one atlas of one byte per pixel (1 on any object)."""
        rows = math.ceil(len(scenes) / cols)
        fbo = self._framebuffer(cols * width, rows * height, masks=True)
        fbo.use()
        fbo.clear(0.0, 0.0, 0.0, 0.0)
        prog = self.mask_program
        prog["size"].value = (float(width), float(height))
        self.ctx.disable(moderngl.DEPTH_TEST)
        try:
            for index, (objects, K) in enumerate(scenes):
                col, row = index % cols, index // cols
                fbo.viewport = (col * width, row * height, width, height)
                prog["proj"].value = (K[0, 0], K[1, 1], K[0, 2], K[1, 2])
                for model, T in objects:
                    prog["R"].write(np.ascontiguousarray(T[:3, :3].T, dtype="f4").tobytes())
                    prog["t"].value = tuple(float(x) for x in T[:3, 3])
                    self._gpu_model(model).mask_vao.render(moderngl.TRIANGLES)
        finally:
            self.ctx.enable(moderngl.DEPTH_TEST)
        return fbo

    @staticmethod
    def _read_outputs(
        fbo: moderngl.Framebuffer, count: int, width: int, height: int, cols: int
    ) -> list[RenderOutput]:
        """RenderOutputs of the first `count` tiles: colour, depth and instance channels read back."""
        full_w, full_h = fbo.size
        # Copies (np.array): frombuffer views of the read-back bytes would be read-only.
        rgb = np.array(np.frombuffer(fbo.read(components=3, attachment=0, alignment=1), np.uint8))
        rgb = rgb.reshape(full_h, full_w, 3)
        depth_instance = np.frombuffer(
            fbo.read(components=2, attachment=1, alignment=1, dtype="f4"), np.float32
        )
        depth_instance = depth_instance.reshape(full_h, full_w, 2)
        outputs = []
        for index in range(count):
            ys, xs = _tile(index, width, height, cols)
            depth = np.ascontiguousarray(depth_instance[ys, xs, 0])
            instance = np.rint(depth_instance[ys, xs, 1]).astype(np.uint8)
            outputs.append(
                RenderOutput(
                    rgb=np.ascontiguousarray(rgb[ys, xs]),
                    depth=depth,
                    mask=instance > 0,
                    instance=instance,
                )
            )
        return outputs

    @staticmethod
    def _read_masks(
        fbo: moderngl.Framebuffer, count: int, width: int, height: int, cols: int
    ) -> list[np.ndarray]:
        """(H, W) bool masks of the first `count` tiles of a mask atlas (one byte per pixel)."""
        full_w, full_h = fbo.size
        mask = np.frombuffer(fbo.read(components=1, alignment=1, dtype="f1"), np.uint8)
        mask = mask.reshape(full_h, full_w) > 0
        return [mask[_tile(index, width, height, cols)] for index in range(count)]

    def release(self, model: ObjectModel) -> None:
        gpu = self._models.pop(id(model), None)
        if gpu is not None:
            with self._egl:
                gpu.release()

    def close(self) -> None:
        with self._egl:  # release our objects, not those of a current other context
            for gpu in self._models.values():
                gpu.release()
            self._models.clear()
            for fbo, attachments in self._fbos.values():
                _release_framebuffer(fbo, attachments)
            self._fbos.clear()
            self.program.release()
            self.mask_program.release()
            self.ctx.release()
        self._egl.destroy()


def _release_framebuffer(fbo: moderngl.Framebuffer, attachments: list) -> None:
    """Frees a framebuffer and its renderbuffers (our context must be current)."""
    fbo.release()
    for attachment in attachments:
        attachment.release()


def _tile(index: int, width: int, height: int, cols: int) -> tuple[slice, slice]:
    """(rows, columns) slices of tile `index` in an atlas of `cols` tiles per row."""
    row, col = divmod(index, cols)
    return slice(row * height, (row + 1) * height), slice(col * width, (col + 1) * width)
