"""On-the-fly synthetic training and test data from meshes: scenes, observations, perturbed poses, crops.

Every sample is a pure function of (seed, index): the same call gives the same sample in any process, so a
resumed run continues exactly where it stopped and a test set is fixed by its seed.

Observation (what the camera sees): the object at its true pose, lit by a random Phong light, in front of a
procedural background with clutter, partly hidden by random occluder meshes (0-60 % of its silhouette), then
colour jitter, blur and sensor noise. Network input: the unlit render at the current pose, as at run time.

Broad appearance (ours, `SynthConfig.broad_appearance`, on by default for training samples): so that the
network learns the alignment of a render with an image rather than this generator's look, most training
samples also get backgrounds of several families (the training photographs of photos.py, blocky mosaics, flat
colours, smooth noise, the procedural ones), coloured, flat or harsh lighting, the object's colours changed as
a real object differs from its mesh, photograph cut-outs as occluders, and a camera (white balance, exposure,
gamma, a brightness gradient, motion blur, JPEG). Test scenes (`test_scene`) keep the classic look, so the
in-domain test set is the same as before; shifted_scenes.py makes the shifted one.
The observation is synthesised at the resolution the crop samples it at and cropped with crop.py's bilinear
sampler, so training crops look like run-time crops of camera images (paper_facts.md §2.1).
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from attn6d_ros.config_from_dict import dataclass_from_dict
from attn6d_ros.crop import CROP_SCALE, CropWindow, compute_window, crop_image, crop_intrinsics
from attn6d_ros.geometry import axis_angle_to_matrix, rigid_flow_px
from attn6d_ros.mesh import ObjectModel, model_from_arrays
from attn6d_ros.photos import TRAIN_PHOTOS, load_photo, random_view
from attn6d_ros.render import Light, Renderer


@dataclass(frozen=True)
class SynthConfig:
    """What the synthetic world looks like. Defaults: a typical 640x480 camera, 0.3-1.5 m, DeepIM noise."""

    image_width: int = 640
    image_height: int = 480
    focal_range_px: tuple[float, float] = (500.0, 650.0)  # fx; fy = fx * U(0.98, 1.02)
    principal_jitter_px: float = 15.0  # cx, cy around the image centre
    depth_range: tuple[float, float] = (0.3, 1.5)  # metres; raised so the object fits the image
    min_visible_fraction: float = 0.7  # of the object's extent in the image (origin margin)
    rot_noise_deg: float = 15.0  # per Euler axis, Gaussian sigma (DeepIM; refiner_anchors.md §3.1)
    trans_noise: tuple[float, float, float] = (0.01, 0.01, 0.05)  # metres, Gaussian sigma (DeepIM)
    max_rot_noise_deg: float = 45.0  # DeepIM rejects larger perturbations
    occluder_probability: float = 0.5
    max_occlusion: float = 0.6  # of the object's silhouette
    # Occluded scenes aim at a hidden share in this range (e.g. (0.2, 0.6) for an occluded test set): one
    # occluder placed over the object, re-placed up to occlusion_tries times, the closest try kept. None: the
    # default placement (1-2 occluders near the line of sight; most hide under 20 %).
    occlusion_range: tuple[float, float] | None = None
    occlusion_tries: int = 8
    clutter_objects: tuple[int, int] = (0, 3)  # background shapes behind the object
    later_stage_probability: float = (
        0.5  # training samples whose current pose is closer than T_init
    )
    later_stage_scale: tuple[float, float] = (0.03, 0.6)  # of the DeepIM noise, for those samples
    # Ours: those samples draw one factor each for rotation, image-plane shift and depth instead of one for
    # all three. With one factor a render aligned in rotation is always near the true depth too, so the
    # network learns to shrink its depth update once rotation looks right, while after a few stages rotation
    # is within 5 degrees and depth still a few per cent off (docs/results.md, "Shipped weights").
    later_stage_independent: bool = False
    # Training samples whose current pose has the true translation, so that only rotation differs between
    # render and image (ours: rotation then shows alone; docs/tools.md, "attn6d-train").
    rotation_only_probability: float = 0.0
    noise_sigma: tuple[float, float] = (0.0, 8.0)  # sensor noise, 0..255 units
    blur_probability: float = 0.3
    crop_size: int = 152  # set from the model config
    # Share of training samples with the broad appearance (module docstring); 0: the classic look only.
    broad_appearance: float = 0.75
    white_balance: tuple[float, float] = (0.7, 1.4)  # per channel gain (broad appearance)
    exposure_stops: tuple[float, float] = (-1.0, 0.8)
    gamma: tuple[float, float] = (0.75, 1.35)
    object_hue_turns: float = 0.06  # +- this share of the colour circle, on the object's pixels
    object_saturation: tuple[float, float] = (0.6, 1.3)
    object_gain: tuple[float, float] = (0.75, 1.3)  # per channel, on the object's pixels
    photo_occluder_probability: float = 0.25
    jpeg_probability: float = 0.5
    jpeg_quality: tuple[int, int] = (30, 95)

    @staticmethod
    def from_dict(values: dict) -> SynthConfig:
        return dataclass_from_dict(SynthConfig, values, "synth")


@dataclass
class TrainingSample:
    """One single-stage training sample (`SceneGenerator.training_sample`); training_batch.collate_samples
    stacks them for the network.

    Attributes:
        image: (S, S, 3) uint8 crop of the observation, in the crop window of T_init.
        render: (S, S, 3) uint8 unlit render at T_cur in the same window.
        flow: (S, S, 2) float32 crop pixels each rendered object pixel moves from T_cur to T_gt (NaN off the
            object).
        T_gt: (4, 4) the true pose.
        T_init: (4, 4) the perturbed initial pose; it fixes the crop window.
        T_cur: (4, 4) the pose the render shows: T_init, or closer to the truth (later_stage_probability).
        K: (3, 3) intrinsics of the camera image.
        window: the crop window of T_init, camera image pixels (its zoom: crop pixels per image pixel).
        object_index: which of the generator's objects.
        occlusion: hidden share of the object's silhouette, [0, 1].
    """

    image: np.ndarray
    render: np.ndarray
    flow: np.ndarray
    T_gt: np.ndarray
    T_init: np.ndarray
    T_cur: np.ndarray
    K: np.ndarray
    window: CropWindow
    object_index: int
    occlusion: float


@dataclass
class TestScene:
    """A full synthetic camera image with one annotated object (evaluation, demo)."""

    image: np.ndarray  # (H, W, 3) uint8
    K: np.ndarray  # (3, 3)
    object_index: int
    T_gt: np.ndarray  # (4, 4)
    T_init: np.ndarray  # (4, 4) perturbed with the configured noise
    occlusion: float  # hidden share of the object's silhouette, [0, 1]


@dataclass
class _View:
    """An image to synthesise: intrinsics, size, and its mapping to the full camera image."""

    K: np.ndarray
    width: int
    height: int
    scale: float = 1.0  # view pixels per camera pixel
    origin_px: tuple[float, float] = (0.0, 0.0)  # camera pixel of view pixel (0, 0) / scale
    full_size: tuple[int, int] = (640, 480)
    lights: list = field(default_factory=list)


class SceneGenerator:
    """Samples cameras, poses, perturbations and rendered observations for a set of objects.

    Args:
        objects: the objects to train or test on.
        cfg: the synthetic world.
        occluders: extra meshes used as occluders and clutter (procedural shapes are always available).
    """

    def __init__(
        self,
        objects: list[ObjectModel],
        cfg: SynthConfig,
        occluders: list[ObjectModel] | None = None,
    ) -> None:
        if not objects:
            raise ValueError("SceneGenerator needs at least one object")
        self.objects = objects
        self.cfg = cfg
        self.shapes = _procedural_shapes() + list(occluders or [])
        self._renderer: Renderer | None = None

    @property
    def renderer(self) -> Renderer:
        # Created on first use, in the process (DataLoader worker) that renders.
        if self._renderer is None:
            os.environ.setdefault("LP_NUM_THREADS", "1")  # llvmpipe: one thread per data worker
            self._renderer = Renderer()
        return self._renderer

    # -- sampling ------------------------------------------------------------------------------------

    def sample_camera(self, rng: np.random.Generator) -> np.ndarray:
        c = self.cfg
        fx = rng.uniform(*c.focal_range_px)
        fy = fx * rng.uniform(0.98, 1.02)
        cx = c.image_width / 2 + rng.uniform(-1, 1) * c.principal_jitter_px
        cy = c.image_height / 2 + rng.uniform(-1, 1) * c.principal_jitter_px
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    def sample_pose(
        self, rng: np.random.Generator, model: ObjectModel, K: np.ndarray
    ) -> np.ndarray:
        """A uniformly random rotation at a depth and image position where the object is mostly visible."""
        c = self.cfg
        # Near enough to be seen, far enough that the diameter spans at most 80 % of the image height.
        z_min = max(c.depth_range[0], K[1, 1] * model.diameter / (0.8 * c.image_height))
        z = rng.uniform(z_min, max(z_min, c.depth_range[1]))
        radius_px = 0.5 * K[0, 0] * model.diameter / z
        margin = (1 - c.min_visible_fraction) * 2 * radius_px
        u = rng.uniform(
            min(radius_px - margin, c.image_width / 2),
            max(c.image_width - radius_px + margin, c.image_width / 2),
        )
        v = rng.uniform(
            min(radius_px - margin, c.image_height / 2),
            max(c.image_height - radius_px + margin, c.image_height / 2),
        )
        T = np.eye(4)
        T[:3, :3] = _random_rotation(rng)
        T[:3, 3] = [(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z]
        return T

    def perturb(
        self,
        rng: np.random.Generator,
        T_gt: np.ndarray,
        scale: float | tuple[float, float, float] = 1.0,
    ) -> np.ndarray:
        """DeepIM noise: Euler angles ~ N(0, 15°) per axis (camera frame, rejected above 45°), and
        translation ~ N(0, (1, 1, 5) cm), all times `scale`, or times (rotation, image-plane, depth)
        factors when `scale` is a triple."""
        c = self.cfg
        rot_scale, xy_scale, z_scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), 3)
        for _ in range(100):
            angles = rng.normal(0.0, math.radians(c.rot_noise_deg) * rot_scale, size=3)
            R_delta = _euler_xyz(angles)
            if _angle_deg(R_delta) <= c.max_rot_noise_deg:
                break
        T = np.eye(4)
        T[:3, :3] = R_delta @ T_gt[:3, :3]
        noise = rng.normal(0.0, 1.0, size=3) * np.asarray(c.trans_noise)
        T[:3, 3] = T_gt[:3, 3] + noise * np.array([xy_scale, xy_scale, z_scale])
        T[2, 3] = max(T[2, 3], 0.5 * T_gt[2, 3])  # never behind the camera
        return T

    def later_stage_pose(
        self, rng: np.random.Generator, T_gt: np.ndarray, noise_scale: float = 1.0
    ) -> np.ndarray:
        """A current pose as after a few stages: the truth perturbed by `noise_scale` times a factor from
        `later_stage_scale`, one for the whole pose or one per part (`later_stage_independent`)."""
        c = self.cfg
        size = 3 if c.later_stage_independent else None
        factors = noise_scale * rng.uniform(*c.later_stage_scale, size=size)
        return self.perturb(rng, T_gt, tuple(factors) if size else float(factors))

    # -- observations ---------------------------------------------------------------------------------

    def observe(
        self,
        rng: np.random.Generator,
        model: ObjectModel,
        T_gt: np.ndarray,
        view: _View,
        difficulty: float = 1.0,
        broad: bool = False,
    ) -> tuple[np.ndarray, float]:
        """Renders a realistic observation of `model` at `T_gt` into `view`, with the broad appearance when
        `broad` (module docstring).

        Returns (image float32 0..255 (h, w, 3), occlusion fraction of the object's silhouette).
        """
        c = self.cfg
        light = _broad_light(rng) if broad else _random_light(rng)
        scene = [(model, T_gt)]
        n_clutter = int(
            rng.integers(c.clutter_objects[0], c.clutter_objects[1] + 1) * difficulty + 0.5
        )
        scene += [self._clutter(rng, model, T_gt) for _ in range(n_clutter)]
        n_background = len(scene)
        occluded = rng.uniform() < c.occluder_probability * difficulty
        if occluded and c.occlusion_range is not None:
            out, occlusion = self._targeted_occlusion(rng, model, T_gt, view, scene, light)
        else:
            if occluded:
                scene += [self._occluder(rng, model, T_gt) for _ in range(int(rng.integers(1, 3)))]
            out = self.renderer.render_scene(scene, view.K, view.width, view.height, light=light)
            occlusion = 0.0  # clutter stays behind the object
            if occluded:
                full = self.renderer.render(model, T_gt, view.K, view.width, view.height)
                occlusion = _hidden_share(out, full)
                if occlusion > c.max_occlusion:  # too much hidden: drop the occluders
                    scene = scene[:n_background]
                    out = self.renderer.render_scene(
                        scene, view.K, view.width, view.height, light=light
                    )
                    occlusion = _hidden_share(out, full)
        if broad:
            background = _broad_background(rng, view.width, view.height, difficulty)
        else:
            background = _background(rng, view.width, view.height, difficulty)
        image = np.where(out.mask[:, :, None], out.rgb.astype(np.float32), background)
        if not broad:
            return _augment(rng, image, view.scale, c, difficulty), float(np.clip(occlusion, 0, 1))
        visible = out.instance == 1
        image = _recolour_object(rng, image, visible, c)
        if rng.uniform() < c.photo_occluder_probability * difficulty and visible.any():
            full_area = visible.sum() / max(1.0 - occlusion, 1e-3)
            image, cutout = _photo_occluder(rng, image, visible)
            occlusion = 1.0 - (visible & ~cutout).sum() / full_area
        image = _broad_camera(rng, image, view.scale, c, difficulty)
        return image, float(np.clip(occlusion, 0.0, 1.0))

    def _targeted_occlusion(
        self,
        rng: np.random.Generator,
        model: ObjectModel,
        T_gt: np.ndarray,
        view: _View,
        scene: list,
        light: object,
    ) -> tuple[object, float]:
        """One occluder over the object, re-placed until the hidden share lies in cfg.occlusion_range (at
        most cfg.occlusion_tries renders); returns (render output, occlusion) of the closest try."""
        low, high = self.cfg.occlusion_range
        full = self.renderer.render(model, T_gt, view.K, view.width, view.height)
        best = None
        for _ in range(self.cfg.occlusion_tries):
            occluder = self._occluder(rng, model, T_gt, lateral=(0.0, 0.45), size=(0.35, 0.8))
            out = self.renderer.render_scene(
                [*scene, occluder], view.K, view.width, view.height, light=light
            )
            occlusion = _hidden_share(out, full)
            miss = max(low - occlusion, occlusion - high, 0.0)
            if best is None or miss < best[0]:
                best = (miss, out, occlusion)
            if miss == 0.0:
                break
        return best[1], best[2]

    def _clutter(self, rng: np.random.Generator, model: ObjectModel, T_gt: np.ndarray) -> tuple:
        """A random shape behind or beside the object."""
        shape = self.shapes[int(rng.integers(len(self.shapes)))]
        T = np.eye(4)
        T[:3, :3] = _random_rotation(rng)
        offset = rng.normal(0.0, 1.0, size=3) * model.diameter
        offset[2] = abs(offset[2]) + 0.5 * model.diameter
        T[:3, 3] = T_gt[:3, 3] + offset
        return _scaled(shape, model.diameter * rng.uniform(0.4, 1.2)), T

    def _occluder(
        self,
        rng: np.random.Generator,
        model: ObjectModel,
        T_gt: np.ndarray,
        lateral: tuple[float, float] = (0.25, 0.7),
        size: tuple[float, float] = (0.25, 0.6),
    ) -> tuple:
        """A random shape between the camera and the object, near its line of sight; `lateral` (offset from
        the line of sight) and `size` are ranges in object diameters, at the object's depth."""
        shape = self.shapes[int(rng.integers(len(self.shapes)))]
        T = np.eye(4)
        T[:3, :3] = _random_rotation(rng)
        z = T_gt[2, 3] * rng.uniform(0.55, 0.85)
        centre = T_gt[:3, 3] / T_gt[2, 3] * z  # on the object's viewing ray
        angle = rng.uniform(0, 2 * np.pi)
        lateral = rng.uniform(*lateral) * model.diameter * z / T_gt[2, 3]
        T[:3, 3] = centre + lateral * np.array([np.cos(angle), np.sin(angle), 0.0])
        size = model.diameter * z / T_gt[2, 3] * rng.uniform(*size)
        return _scaled(shape, size), T

    # -- training and test samples ----------------------------------------------------------------------

    def training_sample(self, seed: int, index: int, difficulty: float = 1.0) -> TrainingSample:
        """One single-stage training sample (see module docstring and TrainingSample).

        `difficulty` in [0, 1] scales perturbations (from 0.3x) and clutter for a curriculum.
        """
        rng = np.random.default_rng([seed, index])
        c = self.cfg
        object_index = int(rng.integers(len(self.objects)))
        model = self.objects[object_index]
        K = self.sample_camera(rng)
        T_gt = self.sample_pose(rng, model, K)
        noise_scale = 0.3 + 0.7 * difficulty
        T_init = self.perturb(rng, T_gt, noise_scale)
        window = compute_window(
            K, T_init, model.hull_vertices, scale=CROP_SCALE, size_px=c.crop_size
        )
        view = self._crop_view(K, window)
        broad = np.random.default_rng([seed, index, 2]).uniform() < c.broad_appearance
        image, occlusion = self.observe(rng, model, T_gt, view, difficulty, broad)
        image[_outside_camera_mask(view)] = 0  # as a crop of the camera image would have
        crop = crop_image(image, _view_window(window, view))
        if rng.uniform() < c.later_stage_probability:
            T_cur = self.later_stage_pose(rng, T_gt, noise_scale)
        else:
            T_cur = T_init
        if c.rotation_only_probability > 0 and rng.uniform() < c.rotation_only_probability:
            T_cur = T_cur.copy()
            T_cur[:3, 3] = T_gt[:3, 3]
        K_crop = crop_intrinsics(K, window)
        rendered = self.renderer.render(model, T_cur, K_crop, c.crop_size, c.crop_size)
        flow, on_object = rigid_flow_px(K_crop, rendered.depth, T_cur, T_gt)
        flow[~on_object] = np.nan
        return TrainingSample(
            image=np.clip(np.rint(crop), 0, 255).astype(np.uint8),
            render=rendered.rgb,
            flow=flow,
            T_gt=T_gt,
            T_init=T_init,
            T_cur=T_cur,
            K=K,
            window=window,
            object_index=object_index,
            occlusion=occlusion,
        )

    def test_scene(self, seed: int, index: int, object_index: int | None = None) -> TestScene:
        """A full camera image with one object at full difficulty and a DeepIM-perturbed initial pose."""
        rng = np.random.default_rng([seed, index, 1])
        if object_index is None:
            object_index = int(rng.integers(len(self.objects)))
        model = self.objects[object_index]
        K = self.sample_camera(rng)
        T_gt = self.sample_pose(rng, model, K)
        T_init = self.perturb(rng, T_gt, 1.0)
        c = self.cfg
        view = _View(K=K, width=c.image_width, height=c.image_height,
                     full_size=(c.image_width, c.image_height))  # fmt: skip
        image, occlusion = self.observe(rng, model, T_gt, view)
        return TestScene(
            image=np.clip(np.rint(image), 0, 255).astype(np.uint8),
            K=K,
            object_index=object_index,
            T_gt=T_gt,
            T_init=T_init,
            occlusion=occlusion,
        )

    def _crop_view(self, K: np.ndarray, window: CropWindow) -> _View:
        """The part of the camera image under `window`, at the crop's sampling density (never finer
        than the camera's own pixels): what crop_image will resample."""
        c = self.cfg
        scale = min(1.0, window.zoom)
        h = window.half_size_px
        u0 = math.floor(window.center_px[0] - h) - 1
        v0 = math.floor(window.center_px[1] - h) - 1
        side = math.ceil((2 * h + 3) * scale)
        A = np.array([[scale, 0, -scale * u0], [0, scale, -scale * v0], [0, 0, 1.0]])
        view = _View(
            K=A @ K, width=side, height=side, scale=scale, origin_px=(u0, v0),
            full_size=(c.image_width, c.image_height),
        )  # fmt: skip
        return view


def _view_window(window: CropWindow, view: _View) -> CropWindow:
    """The crop window in view pixels."""
    s = view.scale
    centre = (
        s * (window.center_px[0] - view.origin_px[0]),
        s * (window.center_px[1] - view.origin_px[1]),
    )
    return CropWindow(
        center_px=centre, half_size_px=window.half_size_px * s, size_px=window.size_px
    )


def _outside_camera_mask(view: _View) -> np.ndarray:
    """(h, w) True for view pixels whose centre lies outside the camera image."""
    s = view.scale
    u = np.arange(view.width) / s + view.origin_px[0]
    v = np.arange(view.height) / s + view.origin_px[1]
    width, height = view.full_size
    return ((v < -0.5) | (v > height - 0.5))[:, None] | ((u < -0.5) | (u > width - 0.5))[None, :]


# ------------------------------------------------------------------------------------------------------
# Helpers: rotations, shapes, lights, backgrounds, augmentation.


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    x, y, z, w = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip


def _euler_xyz(angles: np.ndarray) -> np.ndarray:
    return (
        axis_angle_to_matrix([0, 0, angles[2]])
        @ axis_angle_to_matrix([0, angles[1], 0])
        @ axis_angle_to_matrix([angles[0], 0, 0])
    )


def _angle_deg(R: np.ndarray) -> float:
    return math.degrees(math.acos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)))


def _procedural_shapes() -> list[ObjectModel]:
    """Unit-size occluder and clutter shapes with colourful vertex patterns."""
    import trimesh

    rng = np.random.default_rng(1234)
    meshes = [
        trimesh.creation.box(extents=(1.0, 0.6, 0.4)),
        trimesh.creation.cylinder(radius=0.3, height=1.0, sections=24),
        trimesh.creation.icosphere(subdivisions=2, radius=0.5),
        trimesh.creation.capsule(height=0.6, radius=0.25, count=[12, 12]),
        trimesh.creation.box(extents=(1.0, 0.15, 0.15)),
        trimesh.creation.annulus(r_min=0.25, r_max=0.5, height=0.2, sections=24),
    ]
    shapes = []
    for i, mesh in enumerate(meshes):
        vertices, faces = trimesh.remesh.subdivide_to_size(
            mesh.vertices, mesh.faces, max_edge=0.08
        )
        base = rng.uniform(0.1, 0.95, size=3)
        other = rng.uniform(0.1, 0.95, size=3)
        stripes = (np.sin(vertices @ rng.normal(size=3) * 12) > 0)[:, None]
        colors = np.where(stripes, base, other)
        shapes.append(model_from_arrays(vertices * 0.1, faces, colors, name=f"shape{i}"))
    return shapes


def _hidden_share(scene_render: object, object_render: object) -> float:
    """Share of the object's silhouette (`object_render`, the object alone) that the scene (`scene_render`,
    object = instance 1) hides."""
    return 1.0 - (scene_render.instance == 1).sum() / max(object_render.mask.sum(), 1)


def _scaled(model: ObjectModel, diameter: float) -> ObjectModel:
    """The same shape scaled to about `diameter` (10 % steps, cached to bound GPU uploads)."""
    factor = round(diameter / model.diameter, 1)
    key = (id(model), factor)
    cached = _SCALED_CACHE.get(key)
    if cached is None:
        cached = _SCALED_CACHE[key] = dataclasses.replace(
            model,
            vertices=model.vertices * np.float32(factor),
            diameter=model.diameter * factor,
            points=model.points * factor,
            hull_vertices=model.hull_vertices * factor,
        )
    return cached


_SCALED_CACHE: dict[tuple[int, float], ObjectModel] = {}


def _random_light(rng: np.random.Generator) -> Light:
    direction = rng.normal(size=3)
    direction[2] = -abs(direction[2]) - 0.3  # from the camera's side of the scene
    tint = rng.uniform(0.85, 1.15, size=3)
    return Light(
        direction_cam=tuple(direction),
        ambient=rng.uniform(0.2, 0.6),
        diffuse=rng.uniform(0.3, 0.9),
        specular=rng.uniform(0.0, 0.5),
        shininess=rng.uniform(4.0, 64.0),
        color=tuple(tint / tint.max()),
    )


def _background(
    rng: np.random.Generator, width: int, height: int, difficulty: float
) -> np.ndarray:
    """(h, w, 3) float32 0..255: a smooth colour field, textures and random shapes."""
    cells = int(rng.integers(2, 9))
    field = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.uint8)
    image = Image.fromarray(field).resize((width, height), Image.BILINEAR)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, 4 + 8 * difficulty))):
        x0, x1 = sorted(rng.uniform(-0.2, 1.2, size=2) * width)
        y0, y1 = sorted(rng.uniform(-0.2, 1.2, size=2) * height)
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        if rng.uniform() < 0.5:
            draw.rectangle([x0, y0, x1, y1], fill=color)
        else:
            draw.ellipse([x0, y0, x1, y1], fill=color)
    out = np.asarray(image, dtype=np.float32)
    if rng.uniform() < 0.5:  # a stripe or checker texture
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(4, 40)
        pattern = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period) > 0
        if rng.uniform() < 0.5:
            pattern ^= np.sin((-xx * np.sin(angle) + yy * np.cos(angle)) * 2 * np.pi / period) > 0
        color = rng.uniform(0, 255, size=3).astype(np.float32)
        alpha = rng.uniform(0.2, 0.7)
        out = np.where(pattern[:, :, None], out * (1 - alpha) + color * alpha, out)
    return out + rng.normal(0, rng.uniform(0, 10), size=out.shape).astype(np.float32)


def _augment(
    rng: np.random.Generator, image: np.ndarray, scale: float, c: SynthConfig, difficulty: float
) -> np.ndarray:
    """Colour jitter, blur (camera pixels, converted by `scale`) and sensor noise, on float 0..255."""
    gain = rng.uniform(0.9, 1.1, size=3) * rng.uniform(0.75, 1.25)
    contrast = rng.uniform(0.75, 1.25)
    mean = image.mean()
    image = (image - mean) * contrast + mean
    image = image * gain
    if rng.uniform() < c.blur_probability:
        sigma = rng.uniform(0.3, 1.2) * scale
        if sigma > 0.25:
            pil = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
            image = np.asarray(pil.filter(ImageFilter.GaussianBlur(sigma)), dtype=np.float32)
    sigma = rng.uniform(*c.noise_sigma) * difficulty
    image = image + rng.normal(0, sigma, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255)


# ------------------------------------------------------------------------------------------------------
# The broad appearance (module docstring): lights, backgrounds, object colours, occluders, camera.


def _broad_light(rng: np.random.Generator) -> Light:
    """Coloured, harsh or flat light: 15 % flat at full brightness, otherwise a tinted Phong light."""
    direction = rng.normal(size=3)
    direction[2] = -abs(direction[2]) - 0.1
    if rng.uniform() < 0.15:
        return Light(direction_cam=tuple(direction), ambient=rng.uniform(0.8, 1.1), diffuse=0.0,
                     specular=0.0, color=(1.0, 1.0, 1.0))  # fmt: skip
    tint = rng.uniform(0.55, 1.0, size=3)
    return Light(
        direction_cam=tuple(direction),
        ambient=rng.uniform(0.05, 0.7),
        diffuse=rng.uniform(0.2, 1.2),
        specular=rng.uniform(0.0, 1.0),
        shininess=rng.uniform(2.0, 128.0),
        color=tuple(tint / tint.max()),
    )


def _smooth_field(rng: np.random.Generator, width: int, height: int, cells: int) -> np.ndarray:
    """(h, w) float32 in about [-1, 1]: random values on a cells x cells grid, bilinearly upsampled."""
    grid = rng.uniform(0, 255, size=(cells, cells)).astype(np.uint8)
    field = Image.fromarray(grid).resize((width, height), Image.BILINEAR)
    return np.asarray(field, dtype=np.float32) / 127.5 - 1.0


def _broad_background(
    rng: np.random.Generator, width: int, height: int, difficulty: float
) -> np.ndarray:
    """(h, w, 3) float32 0..255 from one of five families: a training photograph (35 %), the procedural
    background (20 %), a blocky colourful mosaic (15 %), a flat colour with a gradient (10 %), smooth
    multi-scale noise (20 %)."""
    family = rng.choice(5, p=[0.35, 0.2, 0.15, 0.1, 0.2])
    if family == 0:
        photo = load_photo(TRAIN_PHOTOS[int(rng.integers(len(TRAIN_PHOTOS)))])
        out = random_view(rng, photo, width, height) * rng.uniform(0.7, 1.3, size=3)
    elif family == 1:
        return _background(rng, width, height, difficulty)
    elif family == 2:
        cells = (int(rng.integers(2, 13)), int(rng.integers(2, 13)))
        blocks = rng.uniform(0, 255, size=(*cells, 3)).astype(np.uint8)
        out = np.asarray(
            Image.fromarray(blocks).resize((width, height), Image.NEAREST), np.float32
        )
    elif family == 3:
        colour = rng.uniform(0, 255, size=3)
        ramp = _smooth_field(rng, width, height, 2)[:, :, None] * rng.uniform(0, 40)
        out = np.broadcast_to(colour, (height, width, 3)) + ramp
    else:
        out = np.zeros((height, width, 3), np.float32)
        for cells in (3, 6, 12, 24):
            colour = rng.uniform(-1, 1, size=3) * 128 / (1 + cells / 6)
            out += _smooth_field(rng, width, height, cells)[:, :, None] * colour
        out += rng.uniform(40, 215, size=3)
    noise = rng.normal(0, rng.uniform(0, 6), size=out.shape).astype(np.float32)
    return np.clip(out + noise, 0, 255).astype(np.float32)


def _recolour_object(
    rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, c: SynthConfig
) -> np.ndarray:
    """The object's pixels (`mask`) with the colours of another copy of it (80 % of the samples): a hue
    turn, a saturation change and a gain per channel, blotches and fine noise."""
    if not mask.any() or rng.uniform() >= 0.8:
        return image
    h, w = mask.shape
    px = image[mask] / 255.0
    grey = px.mean(axis=1, keepdims=True)
    px = grey + rng.uniform(*c.object_saturation) * (px - grey)
    angle = 2 * math.pi * rng.uniform(-c.object_hue_turns, c.object_hue_turns)
    px = px @ axis_angle_to_matrix(np.full(3, angle / math.sqrt(3.0))).T
    px = px * rng.uniform(*c.object_gain, size=3)
    blotches = _smooth_field(rng, w, h, int(rng.integers(3, 10)))[mask]
    px = px * (1.0 + rng.uniform(0.0, 0.2) * blotches)[:, None]
    px = px + rng.normal(0.0, rng.uniform(0.0, 0.04), size=px.shape)
    out = image.copy()
    out[mask] = np.clip(px * 255.0, 0, 255)
    return out


def _photo_occluder(
    rng: np.random.Generator, image: np.ndarray, visible: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pastes an ellipse cut from a training photograph over part of the object; returns the image and the
    (h, w) bool cut-out."""
    h, w = visible.shape
    ys, xs = np.nonzero(visible)
    k = int(rng.integers(len(xs)))
    size = math.sqrt(visible.sum()) * rng.uniform(0.25, 0.7)
    canvas = Image.new("L", (w, h), 0)
    rx, ry = size * rng.uniform(0.5, 1.2), size * rng.uniform(0.5, 1.2)
    ImageDraw.Draw(canvas).ellipse([xs[k] - rx, ys[k] - ry, xs[k] + rx, ys[k] + ry], fill=255)
    cutout = np.asarray(canvas) > 127
    photo = load_photo(TRAIN_PHOTOS[int(rng.integers(len(TRAIN_PHOTOS)))])
    patch = random_view(rng, photo, w, h) * rng.uniform(0.7, 1.3, size=3)
    return np.where(cutout[:, :, None], patch, image).astype(np.float32), cutout


def _motion_kernel(length_px: float, angle: float) -> np.ndarray:
    """A normalised line kernel `length_px` long at `angle` radians (sampled at 9 points)."""
    n = max(1, math.ceil(length_px / 2))
    kernel = np.zeros((2 * n + 1, 2 * n + 1), np.float32)
    for f in np.linspace(-0.5, 0.5, 9):
        kernel[
            round(n + f * length_px * math.sin(angle)), round(n + f * length_px * math.cos(angle))
        ] += 1
    return kernel / kernel.sum()


def _broad_camera(
    rng: np.random.Generator, image: np.ndarray, scale: float, c: SynthConfig, difficulty: float
) -> np.ndarray:
    """White balance, exposure, contrast, a brightness gradient, blur or motion blur (camera pixels,
    converted by `scale`), noise, gamma and JPEG, on float 0..255."""
    h, w = image.shape[:2]
    x = (
        image
        / 255.0
        * rng.uniform(*c.white_balance, size=3)
        * 2.0 ** rng.uniform(*c.exposure_stops)
    )
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.75, 1.25) + mean
    x = x * (1.0 + rng.uniform(0, 0.3) * _smooth_field(rng, w, h, 2))[:, :, None]
    blur = rng.uniform()
    if blur < 0.3:
        sigma = rng.uniform(0.3, 1.5) * scale
        x = ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0))
    elif blur < 0.5:
        kernel = _motion_kernel(rng.uniform(1.0, 6.0) * scale, rng.uniform(0, math.pi))
        x = np.stack([ndimage.convolve(x[:, :, k], kernel, mode="nearest") for k in range(3)], 2)
    sigma = rng.uniform(0.0, 0.03) * difficulty
    x = x + rng.normal(0.0, 1.0, x.shape) * (sigma + np.sqrt(np.clip(x, 0, None) * 0.001))
    x = np.clip(x, 0.0, 1.0) ** (1.0 / rng.uniform(*c.gamma))
    x = np.rint(x * 255.0).astype(np.uint8)
    if rng.uniform() < c.jpeg_probability:
        buffer = io.BytesIO()
        Image.fromarray(x).save(buffer, format="JPEG", quality=int(rng.integers(*c.jpeg_quality)))
        x = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return x.astype(np.float32)
