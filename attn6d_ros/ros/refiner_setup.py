"""The Refiner as the node and the bag tool run it: checkpoint, object table, device and threads checked and
loaded, the alignment templates prepared, a warm-up; free of ROS (PyTorch is imported only when loading).

`load_refiner` is the one place that reads the object table into a Refiner (objects without trained weights,
or `method: align` in the table, are refined by the alignment alone: objects.uses_network). Errors are
params.ParameterError naming the parameter and the value.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from attn6d_ros.mesh import UNIT_SCALE
from attn6d_ros.objects import ObjectSpec, read_object_table, uses_network
from attn6d_ros.paths import resolve_path
from attn6d_ros.ros.codec import object_box
from attn6d_ros.ros.frame_jobs import apply_align_settings, needs_alignment
from attn6d_ros.ros.params import NodeConfig, ParameterError

if TYPE_CHECKING:
    from attn6d_ros.refiner import Refiner


@dataclass(frozen=True)
class MarkerMesh:
    """What debug/markers draws of an object: its mesh file, the factor to metres, its diameter (metres)."""

    mesh: Path
    scale: float
    diameter_m: float


@dataclass
class LoadedRefiner:
    """A Refiner with the node's objects added.

    Attributes:
        refiner: the Refiner (use it on the thread that loaded it: its OpenGL context lives there).
        device: the device in words, e.g. "cpu" or "cuda:0 (NVIDIA H100)".
        boxes: class id -> codec.object_box(model), for refined/detections' bounding boxes.
        marker_meshes: class id -> MarkerMesh, for debug/markers.
    """

    refiner: Refiner
    device: str
    boxes: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    marker_meshes: dict[str, MarkerMesh] = field(default_factory=dict)


def check_inputs(cfg: NodeConfig) -> tuple[Path, dict[str, ObjectSpec]]:
    """(checkpoint path, object table) of these parameters, checked before anything slow is loaded.

    Raises:
        ParameterError: 'checkpoint' is not a file, or 'objects_file' is missing or invalid.
    """
    checkpoint = Path(resolve_path(cfg.checkpoint))
    if not checkpoint.is_file():
        raise ParameterError(
            "checkpoint",
            f"parameter 'checkpoint': file not found: {checkpoint} (from {cfg.checkpoint!r}); "
            "train one with `make train-demo` or pass a path",
        )
    try:
        specs = read_object_table(resolve_path(cfg.objects_file))
    except (FileNotFoundError, ValueError) as exc:
        raise ParameterError(
            "objects_file", f"parameter 'objects_file' ({cfg.objects_file!r}): {exc}"
        ) from exc
    return checkpoint, specs


def load_refiner(
    cfg: NodeConfig, checkpoint: Path, specs: dict[str, ObjectSpec], log: Callable[[str], None]
) -> LoadedRefiner:
    """Loads the checkpoint on cfg.device (cpu_threads applied), adds every object of the table and checks
    `stages` against the model. `log` gets one line per notable choice.

    Raises:
        ParameterError: a device that is not available, or more stages than the model has.
    """
    import torch

    from attn6d_ros.refiner import Refiner, resolve_device

    if cfg.cpu_threads:
        torch.set_num_threads(cfg.cpu_threads)
    try:
        device = resolve_device(cfg.device)
    except ValueError as exc:
        raise ParameterError("device", f"parameter 'device': {exc}") from exc
    if cfg.device == "auto":
        log(f"device 'auto' -> {device}")
    refiner = Refiner.from_checkpoint(checkpoint, device=str(device))
    loaded = LoadedRefiner(refiner, str(device))
    if device.type == "cuda":
        loaded.device += f" ({torch.cuda.get_device_name(device)})"
    try:
        apply_align_settings(refiner, cfg)
        for object_id, spec in specs.items():
            model = spec.load()
            network = uses_network(spec, refiner.trained_on(object_id))
            refiner.add_object(object_id, model, network=network)
            loaded.boxes[object_id] = object_box(model)
            loaded.marker_meshes[object_id] = MarkerMesh(
                spec.mesh, UNIT_SCALE[spec.units], model.diameter
            )
        problem = stages_problem(cfg.stages, refiner.cfg.num_stages, refiner.cfg.shared_stages)
        if problem:
            raise ParameterError("stages", problem)
    except BaseException:
        refiner.renderer.close()
        raise
    if refiner.align_only:
        log(
            f"refined by the alignment alone (no trained weights in {checkpoint.name}, or method "
            f"'align' in the objects table), {cfg.align_only_turn_deg} degree turns: "
            f"{sorted(refiner.align_only)}"
        )
    return loaded


def start_refiner(
    cfg: NodeConfig,
    checkpoint: Path,
    specs: dict[str, ObjectSpec],
    templates: AlignmentTemplates,
    log: Callable[[str], None],
) -> LoadedRefiner:
    """`load_refiner`, then the alignment templates the parameters need (before the first frame: building
    a mesh's templates takes up to a minute) and, with cfg.warmup, one warm-up refinement (time logged)."""
    loaded = load_refiner(cfg, checkpoint, specs, log)
    try:
        templates.prepare(loaded.refiner, cfg, "start-up")
        if cfg.warmup:
            tic = time.perf_counter()
            warm_up(loaded.refiner, cfg.stages or None, cfg.align)
            log(
                f"warm-up: {(time.perf_counter() - tic) * 1000:.0f} ms on {loaded.device} "
                f"({loaded.refiner.renderer.describe()})"
            )
    except BaseException:
        loaded.refiner.renderer.close()
        raise
    return loaded


def stages_problem(stages: int, num_stages: int, shared: bool) -> str | None:
    """Why `stages` cannot run on a model of `num_stages` stages (`shared` weights or not), or None."""
    if stages > num_stages and not shared:
        return (
            f"parameter 'stages' is {stages} but the checkpoint's model has {num_stages} stages without "
            f"weight sharing: use 0 (the model's own) to {num_stages}"
        )
    return None


class AlignmentTemplates:
    """Loads (or builds and caches on disk) the alignment templates of the objects that the parameters may
    align, once per object: at start-up, and on the first frame after align or tracking.method changed."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self._log = log
        self._ready: set[str] = set()

    def prepare(self, refiner: Refiner, cfg: NodeConfig, when: str) -> None:
        """Prepares what `cfg` needs that is not loaded yet; logs per object how long it took and whether
        the cache had it (`when`: "start-up" or why at run time)."""
        wanted = refiner.object_ids if needs_alignment(cfg) else sorted(refiner.align_only)
        for object_id in wanted:
            if object_id in self._ready:
                continue
            tic = time.perf_counter()
            built = refiner.prepare_alignment([object_id])
            how = "built and cached" if built else "loaded from the cache"
            self._log(
                f"alignment templates of {object_id!r} {how} in "
                f"{(time.perf_counter() - tic) * 1000:.0f} ms ({when})"
            )
            self._ready.add(object_id)


def warm_up(refiner: Refiner, stages: int | None, align: bool) -> None:
    """One refinement of every object on a synthetic 640x480 frame: GL context, mesh uploads, kernels."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    K = np.array([[500.0, 0.0, 319.5], [0.0, 500.0, 239.5], [0.0, 0.0, 1.0]])
    detections = []
    for object_id in refiner.object_ids:
        T = np.eye(4)
        T[2, 3] = max(0.3, 3.0 * refiner.models[object_id].diameter)  # about a third of the image
        detections.append((object_id, T))
    refiner.refine(image, K, detections, stages=stages, align=align)
