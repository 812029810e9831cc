"""Reads a BOP-format dataset split (e.g. lmo/test) as evaluation cases for attn6d-eval.

Layout (bop_toolkit): ``<split>/<scene>/scene_camera.json`` (cam_K), ``scene_gt.json`` (cam_R_m2c,
cam_t_m2c in mm, obj_id per instance), optional ``scene_gt_info.json`` (visib_fract), ``rgb/<im>.png|jpg``;
models in ``<dataset>/models/obj_<id>.ply`` (mm) with ``models_info.json`` (a model with symmetries counts
as symmetric).
Initial poses come from a BOP results CSV (scene_id,im_id,obj_id,score,R,t,time; the best-scoring estimate
per object and image) or, without one, from the ground truth with DeepIM noise.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from attn6d_ros.evaluate import EvalCase
from attn6d_ros.mesh import ObjectModel, load_mesh
from attn6d_ros.synth import SceneGenerator, SynthConfig

MM = 0.001


def _pose(R_flat: list[float], t_mm: list[float]) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = np.asarray(R_flat, dtype=np.float64).reshape(3, 3)
    T[:3, 3] = np.asarray(t_mm, dtype=np.float64) * MM
    return T


def read_init_csv(path: Path) -> dict[tuple[int, int, int], np.ndarray]:
    """(scene_id, im_id, obj_id) -> best-scoring estimated pose from a BOP results CSV."""
    best: dict[tuple[int, int, int], tuple[float, np.ndarray]] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            key = (int(row["scene_id"]), int(row["im_id"]), int(row["obj_id"]))
            score = float(row["score"])
            if key not in best or score > best[key][0]:
                R = [float(x) for x in row["R"].split()]
                t = [float(x) for x in row["t"].split()]
                best[key] = (score, _pose(R, t))
    return {k: v[1] for k, v in best.items()}


def _image(scene_dir: Path, im_id: int) -> np.ndarray:
    for folder, ext in (("rgb", ".png"), ("rgb", ".jpg"), ("gray", ".png")):
        path = scene_dir / folder / f"{im_id:06d}{ext}"
        if path.is_file():
            return np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)
    raise FileNotFoundError(f"no rgb/{im_id:06d}.png|jpg in {scene_dir}")


def bop_cases(
    split_dir: Path,
    models_dir: Path | None = None,
    init_csv: Path | None = None,
    *,
    seed: int = 0,
    max_cases: int | None = None,
) -> tuple[dict[str, ObjectModel], list[EvalCase]]:
    """Loads models (object ids 'obj_000001', ...) and one EvalCase per annotated instance."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise FileNotFoundError(f"BOP split folder not found: {split_dir}")
    models_dir = Path(models_dir) if models_dir else split_dir.parent / "models"
    info_path = models_dir / "models_info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    inits = read_init_csv(Path(init_csv)) if init_csv else None
    rng = np.random.default_rng(seed)
    perturber = None
    models: dict[str, ObjectModel] = {}
    cases: list[EvalCase] = []
    for scene_dir in sorted(p for p in split_dir.iterdir() if (p / "scene_gt.json").is_file()):
        scene_id = int(scene_dir.name)
        cameras = json.loads((scene_dir / "scene_camera.json").read_text())
        gts = json.loads((scene_dir / "scene_gt.json").read_text())
        gt_info_path = scene_dir / "scene_gt_info.json"
        gt_info = json.loads(gt_info_path.read_text()) if gt_info_path.is_file() else {}
        for im_key in sorted(gts, key=int):
            im_id = int(im_key)
            image = _image(scene_dir, im_id)
            K = np.asarray(cameras[im_key]["cam_K"], dtype=np.float64).reshape(3, 3)
            for k, gt in enumerate(gts[im_key]):
                obj_id = int(gt["obj_id"])
                object_id = f"obj_{obj_id:06d}"
                if object_id not in models:
                    entry = info.get(str(obj_id), {})
                    symmetric = bool(
                        entry.get("symmetries_discrete") or entry.get("symmetries_continuous")
                    )
                    models[object_id] = load_mesh(models_dir / f"{object_id}.ply", units="mm",
                                                  symmetric=symmetric, name=object_id)  # fmt: skip
                T_gt = _pose(gt["cam_R_m2c"], gt["cam_t_m2c"])
                if inits is not None:
                    T_init = inits.get((scene_id, im_id, obj_id))
                    if T_init is None:
                        continue  # the detector missed it: nothing to refine
                else:
                    if perturber is None:
                        perturber = SceneGenerator([models[object_id]], SynthConfig())
                    T_init = perturber.perturb(rng, T_gt)
                visib = gt_info.get(im_key, [{}] * (k + 1))[k].get("visib_fract")
                occlusion = None if visib is None else 1.0 - float(visib)
                cases.append(EvalCase(image, K, object_id, T_gt, T_init, occlusion))
                if max_cases is not None and len(cases) >= max_cases:
                    return models, cases
    return models, cases
