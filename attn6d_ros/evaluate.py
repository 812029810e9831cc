"""Evaluation: accuracy of initial and per-stage poses on a fixed synthetic test set or a BOP folder.

`attn6d-eval` prints one JSON object: per object and averaged over objects, for the initial poses and after
every stage, ADD(-S) at 0.1 d, 2D projection at 5 px, 5 cm 5°, median rotation / translation errors and the
translation's share along the camera axis (median depth error: the hardest part to see in a crop; per
object also the signed depth error in per cent of the true distance, its mean and spread per stage and its
correlation with the initial one: a bias, or an under-correction), ADD(-S) at 0.1 d with each pose moved
along its viewing ray to the true depth (what the accuracy would be if depth were exact: the share of the
failures that depth alone causes), the same ADD(-S) accuracy per occlusion bucket (0-20 %, 20-40 %,
40-60 %), and milliseconds per object. With `--align` every summary has one more column, `align`: the
poses after the region-based alignment, the final stage (align/; `--align-turn DEG` gives it six extra
starts; `--stages 0 --align` runs the alignment alone, without the network). Every summary also has
`guard`: how often the final pose is worse than the coarse one (ADD(-S) error larger by over 1 % of the
diameter), how often the guard flags a refinement (refiner.py) and is right, and the share of cases the
node would publish (no error, no guard, score >= its default min_score) although worse than the coarse
pose.

The synthetic test set is generated from a seed (synth.SceneGenerator.test_scene): full 640x480 camera
images, one object each, initial poses with DeepIM noise. `--domain shifted` takes the shifted set instead
(shifted_scenes.py: made by other code than the training data, never trained on). Training validation
calls `evaluate` on the same kind of scenes with the network being trained.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from attn6d_ros.align import AlignConfig
from attn6d_ros.geometry import moved_along_ray
from attn6d_ros.mesh import ObjectModel
from attn6d_ros.metrics import pose_errors
from attn6d_ros.pose_check import DEFAULT_MIN_SCORE
from attn6d_ros.refiner import Refiner
from attn6d_ros.shifted_scenes import shifted_cases
from attn6d_ros.synth import SceneGenerator, SynthConfig, TestScene

log = logging.getLogger(__name__)

OCCLUSION_BUCKETS = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6))  # hidden share of the silhouette
# A final pose is worse than the coarse one: its ADD(-S) error is larger by over this share of the diameter.
WORSE_MARGIN = 0.01


@dataclass
class EvalCase:
    """One annotated object in one image, with its initial pose."""

    image: np.ndarray  # (H, W, 3) uint8
    K: np.ndarray
    object_id: str
    T_gt: np.ndarray
    T_init: np.ndarray
    occlusion: float | None = None  # None: unknown (BOP data without visibility)


def synthetic_cases(
    models: dict[str, ObjectModel], count: int, seed: int, synth: SynthConfig | None = None
) -> list[EvalCase]:
    """`count` test scenes per object from the synthetic generator, fixed by `seed`."""
    ids = list(models)
    cfg = synth or SynthConfig()
    generator = SceneGenerator([models[i] for i in ids], cfg)
    cases = []
    for k, object_id in enumerate(ids):
        for index in range(count):
            scene: TestScene = generator.test_scene(seed, index, object_index=k)
            cases.append(EvalCase(scene.image, scene.K, object_id, scene.T_gt, scene.T_init,
                                  scene.occlusion))  # fmt: skip
    generator.renderer.close()
    return cases


def evaluate(
    refiner: Refiner,
    cases: Sequence[EvalCase],
    models: dict[str, ObjectModel],
    stages: int | None = None,
    *,
    align: bool = False,
) -> dict:
    """Refines every case and summarises the accuracy (see module docstring). Returns a JSON-able dict."""
    n_stages = refiner.cfg.num_stages if stages is None else stages
    labels = _labels(n_stages) + (["align"] if align else [])
    rows: dict[str, list[dict]] = {object_id: [] for object_id in models}
    for case in cases:
        model = models[case.object_id]
        result = refiner.refine(
            case.image, case.K, [(case.object_id, case.T_init)], stages=n_stages, align=align
        )[0]
        poses = [case.T_init, *result.stage_poses]
        poses += [poses[-1]] * (
            n_stages + 1 - len(poses)
        )  # a diverged refinement keeps its last pose
        if align:
            poses.append(result.T)
        errors = [pose_errors(T, case.T_gt, case.K, model.points, model.diameter, model.symmetric)
                  for T in poses]  # fmt: skip
        at_true_depth = [
            pose_errors(moved_along_ray(T, case.T_gt[2, 3] / T[2, 3]), case.T_gt, case.K, model.points,
                        model.diameter, model.symmetric).add_success
            for T in poses
        ]  # fmt: skip
        rows[case.object_id].append(
            {
                "errors": errors,
                "occlusion": case.occlusion,
                "ms": result.elapsed_ms,
                "ok": result.ok,
                "align_failed": result.align_error is not None,
                "guarded": result.guard is not None,
                # As the node would publish it with its default min_score (and the guard on).
                "published": result.ok
                and result.guard is None
                and result.score >= DEFAULT_MIN_SCORE,
                "worse": errors[-1].add_or_add_s
                > errors[0].add_or_add_s + WORSE_MARGIN * model.diameter,
                "depth_rel": [T[2, 3] / case.T_gt[2, 3] - 1.0 for T in poses],
                "add_true_depth": at_true_depth,
            }
        )
    per_object = {oid: _summary(r, labels) for oid, r in rows.items() if r}
    return {
        "objects": per_object,
        "mean": _mean(per_object),
        "stages": n_stages,
        "cases": len(cases),
    }


def _labels(n_stages: int) -> list[str]:
    return ["init"] + [f"stage_{k}" for k in range(1, n_stages + 1)]


def _summary(rows: list[dict], labels: list[str]) -> dict:

    def rate(key: str, subset: list[dict]) -> dict[str, float]:
        return {lab: _mean_or_none([getattr(r["errors"][k], key) for r in subset])
                for k, lab in enumerate(labels)}  # fmt: skip

    def median(key: str, scale: float = 1.0) -> dict[str, float]:
        return {lab: float(np.median([getattr(r["errors"][k], key) for r in rows]) * scale)
                for k, lab in enumerate(labels)}  # fmt: skip

    summary = {
        "count": len(rows),
        "add_0.1d": rate("add_success", rows),
        "add_0.1d_true_depth": {
            lab: float(np.mean([r["add_true_depth"][k] for r in rows]))
            for k, lab in enumerate(labels)
        },
        "proj_5px": rate("proj_success", rows),
        "5cm_5deg": rate("cm_deg_success", rows),
        "median_rot_err_deg": median("rot_err_deg"),
        "median_trans_err_mm": median("trans_err", 1000),
        "median_depth_err_mm": median("depth_err", 1000),
        "depth_err_pct": _signed_depth_error(
            np.array([r["depth_rel"] for r in rows]) * 100.0, labels
        ),
        "occlusion": {},
        "ms_per_object": float(np.mean([r["ms"] for r in rows])),
        "failed": sum(not r["ok"] for r in rows),
        "guard": _guard_summary(rows),
        "align_failed": sum(r["align_failed"] for r in rows),
    }
    for low, high in OCCLUSION_BUCKETS:
        subset = [
            r for r in rows if r["occlusion"] is not None and low <= r["occlusion"] < high + 1e-9
        ]
        name = f"{round(low * 100)}-{round(high * 100)}%"
        summary["occlusion"][name] = {
            "count": len(subset),
            "add_0.1d": rate("add_success", subset),
        }
    return summary


def _guard_summary(rows: list[dict]) -> dict:
    """How often the guard is right (refiner.py, pose_check.py): "worse" is a final pose whose ADD(-S) error
    exceeds the coarse pose's by over WORSE_MARGIN diameters. Shares of all cases unless named "_of_"."""
    worse = [r["worse"] for r in rows]
    guarded = [r["guarded"] for r in rows]
    published = [r["published"] for r in rows]
    return {
        "worse": _mean_or_none(worse),
        "guarded": _mean_or_none(guarded),
        "guarded_worse_of_guarded": _mean_or_none(
            [w for w, g in zip(worse, guarded, strict=True) if g]
        ),
        "worse_guarded_of_worse": _mean_or_none(
            [g for w, g in zip(worse, guarded, strict=True) if w]
        ),
        "published": _mean_or_none(published),
        "published_worse": _mean_or_none([p and w for p, w in zip(published, worse, strict=True)]),
        "add_0.1d_of_published": _mean_or_none(
            [r["errors"][-1].add_success for r in rows if r["published"]]
        ),
    }


def _signed_depth_error(percent: np.ndarray, labels: list[str]) -> dict:
    """Mean and spread per stage of the signed depth errors (cases x stages, per cent of the distance), and
    the correlation of the last stage's with the initial one's (None below 3 cases or without spread)."""
    first, last = percent[:, 0], percent[:, -1]
    correlated = len(percent) >= 3 and first.std() > 0 and last.std() > 0
    return {
        "mean": {lab: float(percent[:, k].mean()) for k, lab in enumerate(labels)},
        "std": {lab: float(percent[:, k].std()) for k, lab in enumerate(labels)},
        "corr_last_with_init": float(np.corrcoef(first, last)[0, 1]) if correlated else None,
    }


def _mean_or_none(values: list) -> float | None:
    return float(np.mean(values)) if values else None


def _mean(per_object: dict[str, dict]) -> dict:
    """Averages over objects (each object weighs the same, as in the LineMOD tables)."""
    if not per_object:
        return {}
    summaries = list(per_object.values())
    out: dict = {"count": sum(s["count"] for s in summaries)}
    for key in (
        "add_0.1d",
        "add_0.1d_true_depth",
        "proj_5px",
        "5cm_5deg",
        "median_rot_err_deg",
        "median_trans_err_mm",
        "median_depth_err_mm",
    ):
        out[key] = {
            lab: float(np.mean([s[key][lab] for s in summaries])) for lab in summaries[0][key]
        }
    out["occlusion"] = {}
    for bucket in summaries[0]["occlusion"]:
        values = [s["occlusion"][bucket] for s in summaries if s["occlusion"][bucket]["count"]]
        out["occlusion"][bucket] = {
            "count": sum(v["count"] for v in values),
            "add_0.1d": {
                lab: float(np.mean([v["add_0.1d"][lab] for v in values])) if values else None
                for lab in summaries[0]["add_0.1d"]
            },
        }
    out["ms_per_object"] = float(np.mean([s["ms_per_object"] for s in summaries]))
    out["guard"] = {
        key: _mean_or_none([s["guard"][key] for s in summaries if s["guard"][key] is not None])
        for key in summaries[0]["guard"]
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="attn6d-eval", description="Evaluate a refiner; prints one JSON object."
    )
    parser.add_argument("--checkpoint", default="package://attn6d_ros/models/demo_refiner.pt")
    parser.add_argument("--objects", default="package://attn6d_ros/config/objects.yaml",
                        help="object table (YAML)")  # fmt: skip
    parser.add_argument("--ids", nargs="*", help="evaluate only these object ids")
    parser.add_argument("--scenes", type=int, default=200, help="synthetic scenes per object")
    parser.add_argument(
        "--domain",
        choices=("in-domain", "shifted"),
        default="in-domain",
        help="in-domain: scenes from the training generator (synth.py); shifted: scenes made by other "
        "code, never trained on (shifted_scenes.py)",
    )
    parser.add_argument("--seed", type=int, default=2024, help="seed of the synthetic test set")
    parser.add_argument("--stages", type=int, default=None)
    parser.add_argument(
        "--occluder-probability",
        type=float,
        default=None,
        help="share of synthetic scenes with occluders (default 0.5; 1.0 with --occlusion-range)",
    )
    parser.add_argument(
        "--occlusion-range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="an occluded test set: one occluder placed to hide LOW-HIGH of each object (e.g. 0.2 0.6)",
    )
    parser.add_argument("--align", action="store_true",
                        help="also report the poses after the region-based alignment (align/)")  # fmt: skip
    parser.add_argument("--align-turn", type=float, default=0.0, metavar="DEG",
                        help="the alignment also starts from the pose turned by +-DEG about each "
                        "camera axis (7 starts; 0: one start)")  # fmt: skip
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--bop", type=Path, help="a BOP dataset split folder (e.g. lmo/test) instead"
    )
    parser.add_argument(
        "--bop-models", type=Path, help="BOP models folder (default: <bop>/../models)"
    )
    parser.add_argument("--bop-init", type=Path, help="BOP results CSV with initial poses "
                        "(default: ground truth with DeepIM noise from --seed)")  # fmt: skip
    parser.add_argument("--max-cases", type=int, default=None, help="stop after this many (BOP)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.occluder_probability is not None and not 0.0 <= args.occluder_probability <= 1.0:
        parser.error(f"--occluder-probability must be in [0, 1], got {args.occluder_probability}")
    if args.occlusion_range is not None:
        low, high = args.occlusion_range
        if not 0.0 <= low < high <= 1.0:
            parser.error(f"--occlusion-range needs 0 <= LOW < HIGH <= 1, got {low} {high}")
    if args.domain == "shifted" and (
        args.occlusion_range is not None or args.occluder_probability is not None
    ):
        parser.error("--occlusion-range and --occluder-probability shape the in-domain set only")
    if args.align_turn and not args.align:
        parser.error(f"--align-turn {args.align_turn} needs --align")
    if args.stages is not None and args.stages < 0:
        parser.error(f"--stages must be >= 0, got {args.stages}")
    try:
        align_config = AlignConfig(start_turn_deg=args.align_turn)
    except ValueError as exc:
        parser.error(f"--align-turn: {exc}")

    from attn6d_ros.objects import load_objects
    from attn6d_ros.paths import resolve_path

    start = time.perf_counter()
    if args.domain == "shifted" and not args.bop:
        # Made before the Refiner exists: pyrender's EGL context comes and goes first.
        models = load_objects(resolve_path(args.objects), args.ids)
        cases = shifted_cases(models, args.scenes, args.seed)
    refiner = Refiner.from_checkpoint(
        resolve_path(args.checkpoint), device=args.device, align_config=align_config
    )
    if args.bop:
        from attn6d_ros.bop import bop_cases

        models, cases = bop_cases(args.bop, args.bop_models, args.bop_init, seed=args.seed,
                                  max_cases=args.max_cases)  # fmt: skip
        synth = None
    elif args.domain == "shifted":
        synth = None
    else:
        models = load_objects(resolve_path(args.objects), args.ids)
        synth = SynthConfig(crop_size=refiner.cfg.crop_size)
        if args.occlusion_range is not None:
            synth = replace(
                synth, occlusion_range=tuple(args.occlusion_range), occluder_probability=1.0
            )
        if args.occluder_probability is not None:
            synth = replace(synth, occluder_probability=args.occluder_probability)
        cases = synthetic_cases(models, args.scenes, args.seed, synth)
    for object_id, model in models.items():
        refiner.add_object(object_id, model)
    if args.align:  # templates loaded (or built once and cached) before any case is timed
        refiner.prepare_alignment()
    report = evaluate(refiner, cases, models, args.stages, align=args.align)
    report.update(
        checkpoint=str(args.checkpoint),
        device=str(refiner.device),
        seed=args.seed,
        source=str(args.bop) if args.bop else "synthetic",
        domain=None if args.bop else args.domain,
        occluder_probability=None if synth is None else synth.occluder_probability,
        occlusion_range=None if synth is None else synth.occlusion_range,
        align_turn_deg=args.align_turn if args.align else None,
        seconds=round(time.perf_counter() - start, 1),
    )
    json.dump(report, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
