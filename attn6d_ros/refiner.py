"""Refiner: the runtime API that crops, renders, runs the network and updates poses for N stages.

Usage::

    refiner = Refiner.from_checkpoint("models/demo_refiner.pt", device="auto")
    refiner.add_object("ape", load_mesh("ape_color_4000.ply", units="m"))
    results = refiner.refine(image_rgb, K, [("ape", T_init)])   # uint8 HxWx3, 3x3, [(id, 4x4)]

The detections of a call are refined in batches of at most `max_batch` (MAX_BATCH): one batched render and
one network call per stage and batch.
A bad detection gets a result with `error` set and never costs the others their result. The Refiner owns an
OpenGL context: create it and call it on one thread.

Score (in [0, 1]): the zero-mean normalised cross-correlation between the image crop and the unlit render at
the final pose, over the render's silhouette and the three colour channels, clipped at 0. It is 1 for a
render that matches the image up to brightness and contrast, near 0 when the silhouette covers unrelated
pixels. It measures appearance agreement (occlusion and lighting lower it), not a calibrated probability.

Alignment (`refine(..., align=True)`; off by default here, on by default in the node): the final stage,
after the network's: each pose is aligned to the object's region in the image by the sparse region-based
method of Stoiber et al. (align/: contour templates cached per mesh, colour histograms learned from the
image, regularised Newton steps); the score is then that of the aligned pose. It replaced our earlier depth
search and region fit (issue 27; docs/experiments.md keeps their history). With `stages=0` the network is
skipped and the alignment alone refines the coarse pose.

Objects without trained weights (`add_object(..., network=False)`): the network never refines them; every call
refines them by the alignment alone, from the coarse pose and from it turned about each camera axis
(`align_only_config`, several starts), whatever `stages` and `align` say, so a new mesh is refined on day one.
`trained_on(object_id)` says whether the checkpoint's metadata lists the object among those it was trained on.
Every result's `method` says what refined it ("network", "network+align", "align", ...).

Guard (`refine(..., guard=True)`, on by default): the coarse and the refined pose are judged against the image
by how well their outlines separate the image's own colours (pose_check.py; blind to colour casts); a
refinement that agrees less than its coarse pose gets `guard` set and `converged` False, so that it is never
passed on as refined (the node publishes it in refined/details only, with the reason). When the alignment
ran, an aligned pose whose outline fits the image worse than `AgreementConfig.max_align_energy`
(align.outline_energy) is guarded too: that catches most poses the network left outside the alignment's reach.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from attn6d_ros.align import (
    AlignConfig,
    AlignResult,
    ViewTemplates,
    align_pose,
    load_or_build_templates,
)
from attn6d_ros.checkpoint import load_checkpoint
from attn6d_ros.crop import CROP_SCALE, CropWindow, compute_window, crop_image, crop_intrinsics
from attn6d_ros.crop_render import poses_from_tensors, render_into_crops
from attn6d_ros.geometry import check_intrinsics, check_pose
from attn6d_ros.mesh import ObjectModel
from attn6d_ros.network import RefinerNet, apply_update, normalize_crop
from attn6d_ros.pose_check import (
    AgreementConfig,
    align_fit_verdict,
    guard_verdict,
    silhouette_agreement,
)
from attn6d_ros.render import FAR, NEAR, Renderer

log = logging.getLogger(__name__)

# A refinement has converged when its last stage moved the model points by less than this share of the
# object's diameter (mean point displacement, as ADD).
CONVERGED_FRACTION = 0.01
# Detections refined together (one render batch and one network call per stage); more are refined in
# batches of this size. Peak memory then no longer grows with the count (bench --memory, README).
MAX_BATCH = 16
# Objects without trained weights are aligned from the coarse pose and from it turned by +- this about each
# camera axis (7 starts): about the rotation noise of a detector's coarse pose (DeepIM's 15 degrees).
ALIGN_ONLY_TURN_DEG = 15.0


@dataclass
class RefinementResult:
    """The outcome for one detection.

    Attributes:
        object_id: the detection's object id.
        T_init: (4, 4) the coarse pose given.
        T: (4, 4) the refined pose (equal to T_init when `error` is set before refinement started); after
            the alignment when it ran.
        stage_poses: the pose after every stage, (4, 4) each (the network's, before any alignment).
        attention: (stages, 3, G, G) float32 attention maps (xy, z, rotation heads), each summing to 1;
            None when the detection was not refined.
        score: [0, 1] agreement of the final render with the image (module docstring); 0 on error.
        converged: the last stage moved the model points by < 1 % of the diameter.
        elapsed_ms: wall time of the whole `refine` call (all detections are refined together).
        error: None, or why this detection was not (fully) refined.
        window: the crop window (fixed by T_init), image pixels; None when it could not be computed.
        align_motion_m: how far the alignment moved the object's points (mean distance, as ADD), metres;
            None when no alignment ran or it failed.
        align_energy: the alignment's final energy (align.AlignResult; lower: the image supports the
            pose's contour better); None when no alignment ran or it failed.
        align_lines: correspondence lines the alignment's last step used; None when none ran.
        align_fit_energy: how badly the aligned pose's outline fits the image (align.outline_energy;
            the guard's second test); None when no alignment ran or it failed.
        align_error: why the alignment failed (the pose before it is kept); None otherwise. With
            ``stages=0`` a failed alignment also sets ``error``.
        agreement: [0, 1] how well the refined pose's outline separates the image's colours
            (pose_check.py); None when the guard did not run.
        agreement_init: the same for the coarse pose, judged in the same window.
        guard: None, or why the guard judged the refined pose worse than the coarse one (then `converged`
            is False, and the node does not publish it as refined); None also when the guard did not run.
        method: what refined the pose, "+"-joined in order: "network" (stages > 0), "align"; "align"
            alone for an object without trained weights; "none" when nothing ran; "" when the detection
            was not refined (error before refinement).
    """

    object_id: str
    T_init: np.ndarray
    T: np.ndarray
    stage_poses: list[np.ndarray] = field(default_factory=list)
    attention: np.ndarray | None = None
    score: float = 0.0
    converged: bool = False
    elapsed_ms: float = 0.0
    error: str | None = None
    window: CropWindow | None = None
    align_motion_m: float | None = None
    align_energy: float | None = None
    align_lines: int | None = None
    align_fit_energy: float | None = None
    align_error: str | None = None
    agreement: float | None = None
    agreement_init: float | None = None
    guard: str | None = None
    method: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


def resolve_device(spec: str) -> torch.device:
    """'auto' -> cuda if available else cpu; 'cpu'; 'cuda' / 'cuda:N' (an error when CUDA is missing)."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or (spec.startswith("cuda:") and spec[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {spec!r} requested but CUDA is not available (use 'auto' or 'cpu')"
            )
        index = int(spec[5:]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s)")
        return torch.device(spec)
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {spec!r}")


class Refiner:
    """Multi-stage render-and-compare refinement of coarse object poses.

    Args:
        net: the refiner network (see checkpoint.load_checkpoint).
        device: "auto", "cpu", "cuda" or "cuda:N".
        renderer: a Renderer to use; by default one is created (moderngl on EGL).
        metadata: checkpoint metadata, kept for reference.
        align_config: settings of the alignment, when a call asks for it (default AlignConfig()).
        align_only_config: settings of the alignment that alone refines objects without trained weights
            (default AlignConfig(start_turn_deg=ALIGN_ONLY_TURN_DEG)).
        align_cache_dir: where the alignment's templates are cached (default: align.default_cache_dir()).
    """

    def __init__(
        self,
        net: RefinerNet,
        *,
        device: str = "auto",
        renderer: Renderer | None = None,
        metadata: dict | None = None,
        align_config: AlignConfig | None = None,
        align_only_config: AlignConfig | None = None,
        align_cache_dir: str | Path | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.cfg = net.cfg
        self.net = net.to(self.device).eval().to(memory_format=torch.channels_last)
        self.renderer = renderer or Renderer()
        self.metadata = metadata or {}
        self.align_config = align_config or AlignConfig()
        turned = AlignConfig(start_turn_deg=ALIGN_ONLY_TURN_DEG)
        self.align_only_config = align_only_config or turned
        self.align_only: set[str] = set()  # objects without trained weights (add_object)
        self.align_cache_dir = align_cache_dir
        self._align_templates: dict[str, ViewTemplates] = {}
        self.models: dict[str, ObjectModel] = {}
        self.last_timings_ms: dict[str, float] = {}
        self.max_batch = MAX_BATCH
        self.agreement_config = AgreementConfig()

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str = "auto",
        *,
        renderer: Renderer | None = None,
        align_config: AlignConfig | None = None,
        align_only_config: AlignConfig | None = None,
        align_cache_dir: str | Path | None = None,
    ) -> Refiner:
        """Loads a checkpoint written by attn6d-train (see checkpoint.py)."""
        net, metadata, _ = load_checkpoint(path)
        return cls(net, device=device, renderer=renderer, metadata=metadata, align_config=align_config,
                   align_only_config=align_only_config, align_cache_dir=align_cache_dir)  # fmt: skip

    @property
    def object_ids(self) -> list[str]:
        return sorted(self.models)

    def add_object(self, object_id: str, model: ObjectModel, *, network: bool = True) -> None:
        """Registers a mesh under `object_id` (the detector's class id). Replaces an earlier one.

        Args:
            network: False for an object the network has no trained weights for: it is then refined by the
                alignment alone, with several starts (module docstring; see `trained_on`).
        """
        if not isinstance(object_id, str) or not object_id:
            raise ValueError(f"object_id must be a non-empty string, got {object_id!r}")
        if object_id in self.models:
            self.renderer.release(self.models[object_id])
        self._align_templates.pop(object_id, None)
        self.models[object_id] = model
        if network:
            self.align_only.discard(object_id)
        else:
            self.align_only.add(object_id)

    def trained_on(self, object_id: str) -> bool | None:
        """Whether the checkpoint's metadata lists `object_id` among the objects it was trained on; None
        when it lists none (weights saved without that record)."""
        objects = self.metadata.get("objects")
        if not isinstance(objects, dict) or not objects:
            return None
        return object_id in objects

    def prepare_alignment(self, object_ids: list[str] | None = None) -> list[str]:
        """Loads (or builds and caches, about a minute per mesh on a CPU) the alignment's templates of
        these objects (default: all), so that the first ``refine(..., align=True)`` does not wait for them.
        Returns the ids whose templates had to be built.

        Raises:
            ValueError: an unknown object id.
        """
        built = []
        for object_id in self.object_ids if object_ids is None else object_ids:
            if object_id not in self.models:
                raise ValueError(f"unknown object_id {object_id!r}; known: {self.object_ids}")
            if object_id not in self._align_templates:
                templates, was_built = load_or_build_templates(
                    self.models[object_id], self.align_config.templates,
                    renderer=self.renderer, cache_dir=self.align_cache_dir,
                )  # fmt: skip
                self._align_templates[object_id] = templates
                if was_built:
                    built.append(object_id)
        return built

    def refine(
        self,
        image_rgb: np.ndarray,
        K: np.ndarray,
        detections: list[tuple[str, np.ndarray]],
        stages: int | None = None,
        *,
        align: bool = False,
        guard: bool = True,
        align_config: AlignConfig | None = None,
    ) -> list[RefinementResult]:
        """Refines every detection of one image.

        Args:
            image_rgb: (H, W, 3) uint8 RGB image (rectified).
            K: (3, 3) intrinsics of the image.
            detections: (object_id, T_cam_obj_init) pairs; poses 4x4, metres, camera optical frame.
            stages: how many stages to run; defaults to the model's (a shared-stage model runs any number);
                0: no network stage (with ``align``, the alignment alone refines the coarse pose).
            align: finally, align each pose to the object's region in the image (module docstring; not in
                the paper). The first call per object loads or builds its templates (prepare_alignment).
            guard: judge the coarse and the refined pose against the image (pose_check.py): a refinement
                that agrees less than its coarse pose gets `guard` set and `converged` False.
            align_config: settings of this call's alignments, for every object (e.g. one start while
                tracking); default `align_config`, and `align_only_config` for objects without weights.

        Objects added with ``network=False`` are refined by the alignment alone whatever `stages` and
        `align` say (module docstring).

        Returns:
            One RefinementResult per detection, in order.

        Raises:
            ValueError: the image or K is invalid (these concern every detection), or a bad `stages`.
        """
        start = time.perf_counter()
        image = _check_image(image_rgb)
        K = check_intrinsics(K)
        n_stages = self.cfg.num_stages if stages is None else int(stages)
        if n_stages < 0 or (not self.cfg.shared_stages and n_stages > self.cfg.num_stages):
            limit = "0 or more" if self.cfg.shared_stages else f"0..{self.cfg.num_stages}"
            raise ValueError(f"stages must be in {limit} for this model, got {stages}")
        results, valid = self._prepare(image, K, detections)
        timings = {"crop": 0.0, "render": 0.0, "network": 0.0, "update": 0.0, "score": 0.0}
        alone = [i for i in valid if results[i].object_id in self.align_only]
        network = [i for i in valid if results[i].object_id not in self.align_only]
        if align or alone:
            timings["align"] = 0.0
        if guard:
            timings["guard"] = 0.0
        # At most max_batch detections go through the network at once: memory stays flat however many a
        # detector sends (200 in one batch took 2 GB; issue 30). Objects without trained weights: the
        # alignment alone.
        runs = [(network, n_stages, align, align_config or self.align_config),
                (alone, 0, True, align_config or self.align_only_config)]  # fmt: skip
        for indices, run_stages, run_align, config in runs:
            for start_index in range(0, len(indices), self.max_batch):
                batch = [results[i] for i in indices[start_index : start_index + self.max_batch]]
                spent = self._refine_batch(image, K, batch, run_stages, run_align, config)
                for name, ms in spent.items():
                    timings[name] += ms
        if guard:
            tic = time.perf_counter()
            for i in valid:
                self._guard(image, K, results[i])
            timings["guard"] += _ms_since(tic)
        elapsed = (time.perf_counter() - start) * 1000.0
        for result in results:
            result.elapsed_ms = elapsed
        timings["total"] = elapsed
        self.last_timings_ms = timings
        return results

    def _guard(self, image: np.ndarray, K: np.ndarray, result: RefinementResult) -> None:
        """Judges the coarse and the refined pose of one refined detection against the image and sets
        `agreement`, `agreement_init` and, when the refinement made it worse, `guard` (pose_check.py)."""
        if result.error is not None:
            return
        model = self.models[result.object_id]
        try:
            initial, refined = silhouette_agreement(image, K, [result.T_init, result.T], model,
                                                    self.renderer, self.agreement_config)  # fmt: skip
        except (
            ValueError
        ) as exc:  # no window around the coarse pose (part of it behind the camera)
            log.debug("guard skipped for %s: %s", result.object_id, exc)
            return
        result.agreement, result.agreement_init = float(refined), float(initial)
        result.guard = guard_verdict(
            initial, refined, self.agreement_config.guard_margin
        ) or align_fit_verdict(result.align_fit_energy, self.agreement_config.max_align_energy)
        if result.guard is not None:
            result.converged = False

    def _prepare(
        self, image: np.ndarray, K: np.ndarray, detections: list[tuple[str, np.ndarray]]
    ) -> tuple[list[RefinementResult], list[int]]:
        """Validates detections and computes their windows; returns results and the refinable indices."""
        height, width = image.shape[:2]
        results, valid = [], []
        for i, detection in enumerate(detections):
            try:
                object_id, T_raw = detection
            except (TypeError, ValueError):
                results.append(
                    _failed(str(detection), np.eye(4), f"detection {i} is not (object_id, pose)")
                )
                continue
            T_init = (
                np.array(T_raw, dtype=np.float64, copy=True)
                if _is_array_like(T_raw)
                else np.eye(4)
            )
            result = RefinementResult(object_id=str(object_id), T_init=T_init, T=T_init.copy())
            results.append(result)
            try:
                if object_id not in self.models:
                    raise ValueError(f"unknown object_id {object_id!r}; known: {self.object_ids}")
                T_init = check_pose(T_raw, name=f"detection {i} ({object_id}) pose")
                if T_init[2, 3] > FAR:
                    raise ValueError(
                        f"pose depth {T_init[2, 3]:.3g} m is beyond the {FAR:g} m the renderer draws "
                        "(a pose in millimetres?)"
                    )
                window = compute_window(
                    K, T_init, self.models[object_id].hull_vertices,
                    scale=CROP_SCALE, size_px=self.cfg.crop_size,
                )  # fmt: skip
                if not window.intersects_image(width, height):
                    raise ValueError(
                        f"crop window (centre ({window.center_px[0]:.0f}, {window.center_px[1]:.0f}) px, "
                        f"half side {window.half_size_px:.0f} px) lies entirely outside the "
                        f"{width}x{height} image"
                    )
            except ValueError as exc:
                result.error = f"detection {i} ({object_id!r}): {exc}"
                continue
            result.window = window
            valid.append(i)
        return results, valid

    def _refine_batch(
        self,
        image: np.ndarray,
        K: np.ndarray,
        batch: list[RefinementResult],
        n_stages: int,
        align: bool,
        align_config: AlignConfig,
    ) -> dict[str, float]:
        """Refines a batch of prepared detections (at most `max_batch`): the network stages, the final
        alignment when `align`, the score; fills in their results and returns the time of each step, ms."""
        tic = time.perf_counter()
        windows = [result.window for result in batch]
        crops = np.stack([crop_image(image, w) for w in windows])  # (B, S, S, 3) float32 0..255
        crop_Ks = [crop_intrinsics(K, w) for w in windows]
        models = [self.models[result.object_id] for result in batch]
        timings = {"crop": _ms_since(tic)}
        stages = self._network_stages(crops, K, windows, crop_Ks, models, [r.T_init for r in batch],
                                      n_stages)  # fmt: skip
        for name, ms in stages.timings_ms.items():
            timings[name] = timings.get(name, 0.0) + ms
        aligned: list[AlignResult | None] = [None] * len(batch)
        if align:
            tic = time.perf_counter()
            aligned = self._final_alignment(image, K, stages.poses, [r.object_id for r in batch],
                                            stages.diverged, align_config)  # fmt: skip
            timings["align"] = _ms_since(tic)
        final = [
            T if a is None or not a.ok else a.T for T, a in zip(stages.poses, aligned, strict=True)
        ]
        tic = time.perf_counter()
        scores = self._score(crops, final, models, crop_Ks)
        for j, result in enumerate(batch):
            result.error = stages.diverged[j]
            if aligned[j] is not None:
                _record_alignment(result, aligned[j], stages.poses[j], models[j], n_stages)
            result.T = final[j]
            result.stage_poses = stages.stage_poses[j]
            result.attention = stages.attention[:, j]
            result.score = scores[j]
            result.converged = stages.diverged[j] is None and _converged(result, models[j])
            steps = [("network", n_stages > 0), ("align", align)]
            result.method = "+".join(name for name, ran in steps if ran) or "none"
        timings["score"] = _ms_since(tic)
        return timings

    @torch.inference_mode()
    def _network_stages(
        self,
        crops: np.ndarray,
        K: np.ndarray,
        windows: list[CropWindow],
        crop_Ks: list[np.ndarray],
        models: list[ObjectModel],
        T_inits: list[np.ndarray],
        n_stages: int,
    ) -> _Stages:
        """Runs `n_stages` network stages on a batch: before each, every detection is rendered at its current
        pose into its crop window (fixed by its coarse pose, T_inits), and the network's update is applied.
        A detection whose update leaves the view (non-finite, or nearer than the near plane) keeps its last
        pose and stops there (`diverged`)."""
        S = self.cfg.crop_size
        dev = self.device
        B = len(T_inits)
        timings = {"crop": 0.0, "render": 0.0, "network": 0.0, "update": 0.0}
        R = torch.from_numpy(np.stack([T[:3, :3] for T in T_inits]))  # float64, CPU
        t = torch.from_numpy(np.stack([T[:3, 3] for T in T_inits]))
        grid = self.cfg.grid_size
        attention = np.zeros((n_stages, B, 3, grid, grid), np.float32)
        stage_poses: list[list[np.ndarray]] = [[] for _ in range(B)]
        diverged: list[str | None] = [None] * B
        if n_stages > 0:
            tic = time.perf_counter()
            observed = normalize_crop(torch.from_numpy(crops)).to(
                dev, memory_format=torch.channels_last
            )
            K_batch = torch.from_numpy(np.repeat(K[None], B, axis=0))
            zoom = torch.tensor([w.zoom for w in windows], dtype=torch.float64)
            timings["crop"] += _ms_since(tic)
        for k in range(n_stages):
            tic = time.perf_counter()
            rendered = render_into_crops(self.renderer, models, poses_from_tensors(R, t), crop_Ks,
                                         S, dev)  # fmt: skip
            timings["render"] += _ms_since(tic)
            tic = time.perf_counter()
            out = self.net.stage(k)(observed, rendered)
            attention[k] = out.attention.float().cpu().numpy()
            xy, dz, q = (x.detach().double().cpu() for x in (out.xy_px, out.dz, out.quat_xyzw))
            timings["network"] += _ms_since(tic)
            tic = time.perf_counter()
            R_new, t_new = apply_update(R, t, K_batch, zoom, xy, dz, q)
            for j in range(B):
                if diverged[j] is not None:
                    continue
                if not torch.isfinite(t_new[j]).all() or t_new[j, 2] <= NEAR:
                    diverged[j] = (
                        f"refinement diverged at stage {k + 1}: translation {t_new[j].tolist()}"
                    )
                    continue
                R[j], t[j] = R_new[j], t_new[j]
                stage_poses[j].append(poses_from_tensors(R[j : j + 1], t[j : j + 1])[0])
            timings["update"] += _ms_since(tic)
        return _Stages(poses_from_tensors(R, t), stage_poses, attention, diverged, timings)

    def _final_alignment(
        self,
        image: np.ndarray,
        K: np.ndarray,
        poses: list[np.ndarray],
        object_ids: list[str],
        diverged: list[str | None],
        config: AlignConfig,
    ) -> list[AlignResult | None]:
        """Aligns each pose to its object's region in the image (align/); None for a diverged one."""
        return [
            None if error is not None else self._align(image, K, T, object_id, config)
            for T, object_id, error in zip(poses, object_ids, diverged, strict=True)
        ]

    def _score(
        self,
        crops: np.ndarray,
        poses: list[np.ndarray],
        models: list[ObjectModel],
        crop_Ks: list[np.ndarray],
    ) -> list[float]:
        """Each crop's agreement with the unlit render at its final pose (module docstring), in [0, 1]."""
        S = self.cfg.crop_size
        renders = self.renderer.render_batch(list(zip(models, poses, crop_Ks, strict=True)), S, S)
        return [_ncc_score(crop, r.rgb, r.mask) for crop, r in zip(crops, renders, strict=True)]

    def _align(
        self, image: np.ndarray, K: np.ndarray, T: np.ndarray, object_id: str, config: AlignConfig
    ) -> AlignResult:
        """The alignment of one pose; its templates are loaded or built on first use."""
        self.prepare_alignment([object_id])
        try:
            return align_pose(image, K, T, self._align_templates[object_id], config)
        except ValueError as exc:  # a malformed pose from an earlier stage: keep it
            return AlignResult(T=T, energy=float("inf"), valid_lines=0, error=str(exc))


@dataclass
class _Stages:
    """What the network stages made of a batch of detections (Refiner._network_stages)."""

    poses: list[np.ndarray]  # (4, 4) each: after the last stage (the last good one when diverged)
    stage_poses: list[list[np.ndarray]]  # per detection, the pose after every stage it completed
    attention: np.ndarray  # (stages, B, 3, G, G) float32
    diverged: list[str | None]  # per detection, why its refinement diverged; None when it did not
    timings_ms: dict[str, float]  # crop (the observed crops' upload), render, network, update


def _record_alignment(
    result: RefinementResult, aligned: AlignResult, T_before: np.ndarray, model: ObjectModel,
    n_stages: int,
) -> None:  # fmt: skip
    """Fills the result's align_* fields (its pose is the aligned one, or ``T_before`` when the alignment
    failed; a failure is the result's error when the alignment was its only refinement)."""
    result.align_lines = aligned.valid_lines
    if not aligned.ok:
        result.align_error = aligned.error
        if n_stages == 0:  # the alignment was the only refinement
            result.error = f"alignment failed: {aligned.error}"
        return
    result.align_motion_m = _mean_point_motion(model.points, T_before, aligned.T)
    result.align_energy = aligned.energy
    result.align_fit_energy = aligned.fit_energy


def _converged(result: RefinementResult, model: ObjectModel) -> bool:
    """The last stage (the alignment when no network stage ran) moved the model points by less than
    CONVERGED_FRACTION of the diameter."""
    poses = result.stage_poses
    previous = poses[-2] if len(poses) > 1 else result.T_init
    last = poses[-1] if poses else result.T
    return _mean_point_motion(model.points, previous, last) < CONVERGED_FRACTION * model.diameter


def _check_image(image_rgb: np.ndarray) -> np.ndarray:
    image = np.asarray(image_rgb)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"image must be an HxWx3 uint8 RGB array, got {image.dtype} {image.shape}"
        )
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"image is too small: {image.shape[1]}x{image.shape[0]}")
    return image


def _is_array_like(value: object) -> bool:
    try:
        return np.asarray(value, dtype=np.float64).shape == (4, 4)
    except (TypeError, ValueError):
        return False


def _failed(object_id: str, T: np.ndarray, error: str) -> RefinementResult:
    return RefinementResult(object_id=object_id, T_init=T, T=T.copy(), error=error)


def _ms_since(tic: float) -> float:
    return (time.perf_counter() - tic) * 1000.0


def _ncc_score(observed: np.ndarray, rendered: np.ndarray, mask: np.ndarray) -> float:
    """Zero-mean normalised cross-correlation over the mask (all channels), clipped to [0, 1]."""
    if mask.sum() < 10:
        return 0.0
    a = observed[mask].astype(np.float64)
    b = rendered[mask].astype(np.float64)
    a -= a.mean(axis=0)
    b -= b.mean(axis=0)
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    if denominator < 1e-9:
        return 0.0
    return float(np.clip((a * b).sum() / denominator, 0.0, 1.0))


def _mean_point_motion(points: np.ndarray, T_a: np.ndarray, T_b: np.ndarray) -> float:
    delta = points @ (T_a[:3, :3] - T_b[:3, :3]).T + (T_a[:3, 3] - T_b[:3, 3])
    return float(np.linalg.norm(delta, axis=1).mean())
