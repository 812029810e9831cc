"""The shifted test set: camera images made by other code than the training data, to measure robustness.

Training observations come from synth.py (our moderngl renderer, one Phong light, procedural and training
photographs, its own colour jitter). None of that code is used here. These scenes are made independently:

- rendered by pyrender (PBR metallic-roughness shading, 1-3 coloured point and spot lights, 2x supersampled);
- the object's colours changed the way a real object differs from its mesh: per-channel gain, hue and
  saturation shifts, blotchy and fine noise on the texture;
- backgrounds and 2D occluders cut from the held-out photographs (photos.TEST_PHOTOS, never trained on);
  a third of the scenes occluded (10-50 % of the silhouette);
- a camera: white balance 0.6-1.6 per channel, exposure (over and under), vignetting, defocus or motion
  blur, shot and read noise, gamma, JPEG compression.

Poses and initial poses follow the same protocol as the in-domain set (uniform rotations, 0.35-1.4 m,
DeepIM noise: 15 degrees per Euler axis, 1/1/5 cm), drawn with scipy here. Every scene is a pure function
of (seed, index); `shifted_cases` gives `evaluate.EvalCase`s, as `evaluate.synthetic_cases` does.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from scipy.spatial.transform import Rotation

from attn6d_ros.mesh import ObjectModel
from attn6d_ros.photos import TEST_PHOTOS, load_photo

SUPERSAMPLE = 2  # rendered at 2x and box-filtered: anti-aliased edges against the photographs
_CV_TO_GL = np.diag(
    [1.0, -1.0, -1.0, 1.0]
)  # OpenCV camera axes to pyrender's (OpenGL) camera axes


@dataclass(frozen=True)
class ShiftedConfig:
    """Ranges of the shifted scenes (each drawn uniformly unless noted)."""

    image_width: int = 640
    image_height: int = 480
    focal_range_px: tuple[float, float] = (480.0, 720.0)
    depth_range: tuple[float, float] = (0.35, 1.4)  # metres
    rot_noise_deg: float = (
        15.0  # DeepIM: per Euler axis, Gaussian sigma, rejected above 45 degrees
    )
    trans_noise: tuple[float, float, float] = (0.01, 0.01, 0.05)  # metres, Gaussian sigma
    occluded_share: float = 1.0 / 3.0
    occlusion_range: tuple[float, float] = (0.1, 0.5)  # of the silhouette, for occluded scenes
    object_gain: tuple[float, float] = (0.7, 1.35)  # per channel, on the mesh's colours
    hue_shift_turns: float = 0.08  # +- this share of the colour circle
    saturation: tuple[float, float] = (0.5, 1.4)
    texture_noise: tuple[float, float] = (0.0, 0.12)  # sigma of the colour noise, 0..1 units
    roughness: tuple[float, float] = (0.2, 0.9)
    metallic: tuple[float, float] = (0.0, 0.4)
    white_balance: tuple[float, float] = (0.6, 1.6)  # per channel gain
    exposure_stops: tuple[float, float] = (-1.3, 1.0)
    gamma: tuple[float, float] = (0.65, 1.5)
    vignetting: tuple[float, float] = (0.0, 0.6)  # brightness lost in the corners
    defocus_radius_px: tuple[float, float] = (0.0, 2.5)
    motion_blur_px: tuple[float, float] = (0.0, 9.0)
    noise_sigma: tuple[float, float] = (0.005, 0.04)  # read noise, 0..1 units
    jpeg_quality: tuple[int, int] = (25, 90)


@dataclass
class ShiftedScene:
    """One camera image with one annotated object and its DeepIM-perturbed initial pose."""

    image: np.ndarray  # (H, W, 3) uint8
    K: np.ndarray  # (3, 3)
    object_index: int
    T_gt: np.ndarray  # (4, 4) T_cam_obj, metres
    T_init: np.ndarray  # (4, 4)
    occlusion: float  # hidden share of the object's silhouette
    settings: dict  # what was drawn (photo names, white balance, ...), for inspection and tests


class ShiftedSceneGenerator:
    """Makes shifted scenes of `objects` with pyrender on EGL. Call `close()` when done (or use `with`)."""

    def __init__(self, objects: list[ObjectModel], cfg: ShiftedConfig | None = None) -> None:
        if not objects:
            raise ValueError("ShiftedSceneGenerator needs at least one object")
        self.objects = objects
        self.cfg = cfg or ShiftedConfig()
        self._renderer = None

    def __enter__(self) -> ShiftedSceneGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Frees the EGL context (and only it: the display stays up for other renderers)."""
        if self._renderer is not None:
            from attn6d_ros.render.pyrender_backend import _delete_offscreen

            _delete_offscreen(self._renderer)
            self._renderer = None

    def _offscreen(self):
        if self._renderer is None:
            os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
            import pyrender

            c = self.cfg
            self._renderer = pyrender.OffscreenRenderer(
                c.image_width * SUPERSAMPLE, c.image_height * SUPERSAMPLE
            )
        return self._renderer

    def scene(self, seed: int, index: int, object_index: int | None = None) -> ShiftedScene:
        """Shifted scene `index` of the set fixed by `seed` (a different stream from synth.py's)."""
        rng = np.random.default_rng([seed, index, 0x5F1F7])
        if object_index is None:
            object_index = int(rng.integers(len(self.objects)))
        model = self.objects[object_index]
        c = self.cfg
        K = self._camera(rng)
        T_gt = self._pose(rng, model, K)
        T_init = self._deepim_noise(rng, T_gt)
        settings: dict = {}
        rgb, coverage = self._render_object(rng, model, T_gt, K, settings)
        background = _photo_view(rng, _pick_photo(rng, settings, "background"), c)
        image = rgb + (1.0 - coverage[:, :, None]) * background
        occlusion = 0.0
        if rng.uniform() < c.occluded_share:
            image, occlusion = self._occlude(rng, image, coverage, settings)
        image = _camera_pipeline(rng, image, c, settings)
        return ShiftedScene(image, K, object_index, T_gt, T_init, occlusion, settings)

    # -- geometry ---------------------------------------------------------------------------------------

    def _camera(self, rng: np.random.Generator) -> np.ndarray:
        c = self.cfg
        f = rng.uniform(*c.focal_range_px)
        cx = c.image_width / 2 + rng.uniform(-20.0, 20.0)
        cy = c.image_height / 2 + rng.uniform(-20.0, 20.0)
        return np.array([[f, 0.0, cx], [0.0, f * rng.uniform(0.99, 1.01), cy], [0.0, 0.0, 1.0]])

    def _pose(self, rng: np.random.Generator, model: ObjectModel, K: np.ndarray) -> np.ndarray:
        """Uniform rotation; a depth at which the object spans at most 3/4 of the image height; the
        origin projected where at least ~75 % of the object's extent stays in the image."""
        c = self.cfg
        z_low = max(c.depth_range[0], K[1, 1] * model.diameter / (0.75 * c.image_height))
        z = rng.uniform(z_low, max(z_low, c.depth_range[1]))
        radius = 0.5 * K[0, 0] * model.diameter / z
        u = rng.uniform(
            min(0.5 * radius, c.image_width / 2),
            max(c.image_width - 0.5 * radius, c.image_width / 2),
        )
        v = rng.uniform(
            min(0.5 * radius, c.image_height / 2),
            max(c.image_height - 0.5 * radius, c.image_height / 2),
        )
        T = np.eye(4)
        T[:3, :3] = Rotation.random(random_state=rng).as_matrix()
        T[:3, 3] = np.linalg.solve(K, [u * z, v * z, z])
        return T

    def _deepim_noise(self, rng: np.random.Generator, T_gt: np.ndarray) -> np.ndarray:
        c = self.cfg
        while True:
            delta = Rotation.from_euler("xyz", rng.normal(0.0, math.radians(c.rot_noise_deg), 3))
            if delta.magnitude() <= math.radians(45.0):
                break
        T = np.eye(4)
        T[:3, :3] = delta.as_matrix() @ T_gt[:3, :3]
        T[:3, 3] = T_gt[:3, 3] + rng.normal(0.0, 1.0, 3) * np.asarray(c.trans_noise)
        T[2, 3] = max(T[2, 3], 0.5 * T_gt[2, 3])
        return T

    # -- appearance -------------------------------------------------------------------------------------

    def _object_colours(
        self, rng: np.random.Generator, model: ObjectModel, settings: dict
    ) -> np.ndarray:
        """(V, 3) the mesh's colours changed as a real object differs from its scan."""
        c = self.cfg
        colours = model.colors.astype(np.float64)
        hue = rng.uniform(-c.hue_shift_turns, c.hue_shift_turns)
        saturation = rng.uniform(*c.saturation)
        gain = rng.uniform(*c.object_gain, size=3)
        grey = colours.mean(axis=1, keepdims=True)
        colours = grey + saturation * (colours - grey)
        colours = _rotate_hue(colours, hue) * gain
        # Blotches: a smooth random field over the object (a few random plane waves), and fine noise.
        noise = rng.uniform(*c.texture_noise)
        directions = rng.normal(size=(4, 3)) / model.diameter * rng.uniform(2.0, 12.0, (4, 1))
        waves = np.sin(
            model.vertices.astype(np.float64) @ directions.T + rng.uniform(0, 6.3, 4)
        ).mean(1)
        colours = colours * (1.0 + noise * 1.5 * waves)[:, None]
        colours = colours + rng.normal(0.0, noise * 0.5, colours.shape)
        settings.update(object_hue_turns=hue, object_saturation=saturation, object_gain=gain.tolist(),
                        texture_noise=noise)  # fmt: skip
        return np.clip(colours, 0.0, 1.0)

    def _render_object(
        self,
        rng: np.random.Generator,
        model: ObjectModel,
        T: np.ndarray,
        K: np.ndarray,
        settings: dict,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rgb (H, W, 3) float32 0..1 premultiplied by coverage, coverage (H, W) float32 0..1)."""
        import pyrender

        c = self.cfg
        s = SUPERSAMPLE
        colours = self._object_colours(rng, model, settings)
        material = pyrender.MetallicRoughnessMaterial(
            baseColorFactor=(1.0, 1.0, 1.0, 1.0),
            metallicFactor=float(rng.uniform(*c.metallic)),
            roughnessFactor=float(rng.uniform(*c.roughness)),
        )
        primitive = pyrender.Primitive(
            positions=model.vertices,
            normals=model.normals,
            indices=model.faces,
            color_0=np.hstack([colours, np.ones((len(colours), 1))]).astype(np.float32),
            material=material,
        )
        ambient = rng.uniform(0.03, 0.35)
        scene = pyrender.Scene(bg_color=(0.0, 0.0, 0.0, 0.0), ambient_light=(ambient,) * 3)
        # Camera pixel u's centre is supersampled pixel s*u + (s-1)/2; pyrender's centres are at +0.5.
        camera = pyrender.IntrinsicsCamera(
            s * K[0, 0], s * K[1, 1], s * K[0, 2] + (s - 1) / 2 + 0.5, s * K[1, 2] + (s - 1) / 2 + 0.5,
            znear=0.01, zfar=20.0,
        )  # fmt: skip
        scene.add(camera, pose=np.eye(4))
        scene.add(pyrender.Mesh([primitive]), pose=_CV_TO_GL @ T)
        lights = []
        for _ in range(int(rng.integers(1, 4))):
            kelvin = rng.uniform(2700.0, 9000.0)
            colour = _kelvin_rgb(kelvin)
            position = T[:3, 3] + rng.normal(0.0, 1.0, 3) * 0.6
            position[2] = min(position[2], T[2, 3] - 0.1)  # on the camera's side of the object
            intensity = rng.uniform(1.0, 6.0) * float(np.sum((position - T[:3, 3]) ** 2))
            pose = np.eye(4)
            pose[:3, :3] = _look_at(position, T[:3, 3])
            pose[:3, 3] = position
            if rng.uniform() < 0.5:
                light = pyrender.PointLight(color=colour, intensity=intensity)
            else:
                light = pyrender.SpotLight(color=colour, intensity=1.5 * intensity,
                                           innerConeAngle=0.2, outerConeAngle=0.7)  # fmt: skip
            scene.add(light, pose=_CV_TO_GL @ pose)
            lights.append(round(kelvin))
        settings.update(light_kelvin=lights, ambient=ambient)
        rgb, depth = self._offscreen().render(scene)
        rgb = rgb.astype(np.float32) / 255.0
        coverage = (depth > 0).astype(np.float32)
        rgb = rgb * coverage[:, :, None]  # pyrender's MSAA blends edges with black: premultiplied
        return _downsample(rgb, s), _downsample(coverage, s)

    def _occlude(
        self, rng: np.random.Generator, image: np.ndarray, coverage: np.ndarray, settings: dict
    ) -> tuple[np.ndarray, float]:
        """Pastes a photograph cut-out (an ellipse or polygon) over part of the object, re-placed until the
        hidden share lies in cfg.occlusion_range (the closest of 12 tries is kept)."""
        c = self.cfg
        photo = _photo_view(rng, _pick_photo(rng, settings, "occluder"), c)
        silhouette = coverage > 0.5
        area = max(int(silhouette.sum()), 1)
        ys, xs = np.nonzero(silhouette)
        if len(xs) == 0:
            return image, 0.0
        low, high = c.occlusion_range
        target = rng.uniform(low, high)
        best = None
        for _ in range(12):
            k = int(rng.integers(len(xs)))
            size = math.sqrt(area * target) * rng.uniform(0.8, 1.6)
            mask = _cutout_mask(rng, c.image_width, c.image_height, (xs[k], ys[k]), size)
            hidden = float((mask[silhouette] > 0.5).mean())
            miss = max(low - hidden, hidden - high, 0.0)
            if best is None or miss < best[0]:
                best = (miss, mask, hidden)
            if miss == 0.0:
                break
        _, mask, hidden = best
        settings["occlusion"] = hidden
        return image * (1 - mask[:, :, None]) + photo * mask[:, :, None], hidden


def shifted_cases(
    models: dict[str, ObjectModel], count: int, seed: int, cfg: ShiftedConfig | None = None
):
    """`count` shifted scenes per object as evaluate.EvalCase, fixed by `seed`."""
    from attn6d_ros.evaluate import EvalCase

    ids = list(models)
    cases = []
    with ShiftedSceneGenerator([models[i] for i in ids], cfg) as generator:
        for k, object_id in enumerate(ids):
            for index in range(count):
                s = generator.scene(seed, index, object_index=k)
                cases.append(EvalCase(s.image, s.K, object_id, s.T_gt, s.T_init, s.occlusion))
    return cases


# ------------------------------------------------------------------------------------------------------
# Helpers: photographs, colours, the camera.


def _pick_photo(rng: np.random.Generator, settings: dict, role: str) -> np.ndarray:
    name = TEST_PHOTOS[int(rng.integers(len(TEST_PHOTOS)))]
    settings[f"{role}_photo"] = name
    return load_photo(name)


def _photo_view(rng: np.random.Generator, photo: np.ndarray, c: ShiftedConfig) -> np.ndarray:
    """(H, W, 3) float32 0..1: the photograph turned by up to 30 degrees, zoomed so that it covers 0.5-0.9 of
    the image's width, seen at a random place (mirrored beyond its borders)."""
    h, w = photo.shape[:2]
    angle = math.radians(rng.uniform(-30.0, 30.0))
    pixels_per_px = w * rng.uniform(0.5, 0.9) / c.image_width  # photo pixels per image pixel
    centre = np.array([rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w])
    cos, sin = math.cos(angle) * pixels_per_px, math.sin(angle) * pixels_per_px
    matrix = np.array([[cos, -sin], [sin, cos]])  # image (row, col) -> photo (row, col)
    offset = centre - matrix @ np.array([c.image_height / 2, c.image_width / 2])
    channels = [
        ndimage.affine_transform(photo[:, :, k].astype(np.float32), matrix, offset,
                                 output_shape=(c.image_height, c.image_width), order=1, mode="mirror")
        for k in range(3)
    ]  # fmt: skip
    return np.stack(channels, axis=2) / 255.0


def _cutout_mask(
    rng: np.random.Generator, width: int, height: int, centre: tuple[float, float], size: float
) -> np.ndarray:
    """(H, W) float32 0..1 anti-aliased mask of an ellipse or a random polygon about `centre`."""
    s = SUPERSAMPLE
    canvas = Image.new("L", (width * s, height * s), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy = (centre[0] + 0.5) * s, (centre[1] + 0.5) * s
    if rng.uniform() < 0.5:
        rx, ry = size * s * rng.uniform(0.5, 1.0), size * s * rng.uniform(0.5, 1.0)
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
    else:
        angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(4, 8))))
        radii = size * s * rng.uniform(0.5, 1.1, len(angles))
        corners = [
            (cx + r * math.cos(a), cy + r * math.sin(a))
            for a, r in zip(angles, radii, strict=True)
        ]
        draw.polygon(corners, fill=255)
    return _downsample(np.asarray(canvas, np.float32) / 255.0, s)


def _downsample(image: np.ndarray, s: int) -> np.ndarray:
    """Box filter by `s` in both directions ((H*s, W*s, ...) -> (H, W, ...))."""
    h, w = image.shape[0] // s, image.shape[1] // s
    return image.reshape(h, s, w, s, *image.shape[2:]).mean(axis=(1, 3)).astype(np.float32)


def _rotate_hue(colours: np.ndarray, turns: float) -> np.ndarray:
    """Rotates (N, 3) RGB colours about the grey axis by `turns` of a full circle."""
    angle = 2 * math.pi * turns
    axis = np.ones(3) / math.sqrt(3.0)
    return colours @ Rotation.from_rotvec(axis * angle).as_matrix().T


def _kelvin_rgb(kelvin: float) -> np.ndarray:
    """Approximate RGB of a black body at `kelvin` (2700 K warm to 9000 K cool), max channel 1."""
    t = kelvin / 100.0
    r = 1.0 if t <= 66 else min(1.0, 1.293 * (t - 60) ** -0.1332)
    g = 0.390 * math.log(t) - 0.632 if t <= 66 else 1.130 * (t - 60) ** -0.0755
    b = 1.0 if t >= 66 else (0.0 if t <= 19 else 0.543 * math.log(t - 10) - 1.196)
    rgb = np.clip([r, g, b], 0.05, None)
    return rgb / rgb.max()


def _look_at(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(3, 3) rotation of an OpenCV-style frame at `position` whose +z looks at `target`."""
    z = target - position
    z = z / np.linalg.norm(z)
    helper = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


def _camera_pipeline(
    rng: np.random.Generator, image: np.ndarray, c: ShiftedConfig, settings: dict
) -> np.ndarray:
    """Linear 0..1 scene -> uint8 camera image: white balance, exposure, vignetting, blur, noise, gamma,
    JPEG."""
    h, w = image.shape[:2]
    balance = rng.uniform(*c.white_balance, size=3)
    exposure = 2.0 ** rng.uniform(*c.exposure_stops)
    image = image * balance * exposure
    strength = rng.uniform(*c.vignetting)
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
    image = image * (1.0 - strength * r2)[:, :, None]
    if rng.uniform() < 0.5:
        radius = rng.uniform(*c.defocus_radius_px)
        kernel = _disk_kernel(radius)
        settings["defocus_radius_px"] = radius
    else:
        length = rng.uniform(*c.motion_blur_px)
        kernel = _line_kernel(length, rng.uniform(0, np.pi))
        settings["motion_blur_px"] = length
    image = np.stack(
        [ndimage.convolve(image[:, :, k], kernel, mode="nearest") for k in range(3)], axis=2
    )
    read = rng.uniform(*c.noise_sigma)
    shot = np.sqrt(np.clip(image, 0, None) * 0.002)
    image = image + rng.normal(0.0, 1.0, image.shape) * (read + shot)
    gamma = rng.uniform(*c.gamma)
    image = np.clip(image, 0.0, 1.0) ** (1.0 / gamma)
    quality = int(rng.integers(c.jpeg_quality[0], c.jpeg_quality[1] + 1))
    settings.update(white_balance=balance.tolist(), exposure=exposure, vignetting=strength, gamma=gamma,
                    jpeg_quality=quality)  # fmt: skip
    return _jpeg(np.rint(image * 255.0).astype(np.uint8), quality)


def _disk_kernel(radius: float) -> np.ndarray:
    r = max(radius, 0.5)
    n = math.ceil(r)
    yy, xx = np.mgrid[-n : n + 1, -n : n + 1]
    kernel = np.clip(r + 0.5 - np.sqrt(xx**2 + yy**2), 0.0, 1.0)
    return kernel / kernel.sum()


def _line_kernel(length: float, angle: float) -> np.ndarray:
    n = math.ceil(length / 2) + 1
    canvas = Image.new("L", (8 * (2 * n + 1),) * 2, 0)
    c = 4 * (2 * n + 1)
    dx, dy = 4 * length * math.cos(angle), 4 * length * math.sin(angle)
    ImageDraw.Draw(canvas).line([(c - dx, c - dy), (c + dx, c + dy)], fill=255, width=8)
    kernel = _downsample(np.asarray(canvas, np.float32), 8)
    return kernel / kernel.sum()


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    import io

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))
