"""The BOP reader: a fabricated one-scene dataset round-trips poses, units, symmetry and visibility."""

import json
from pathlib import Path

import numpy as np
import trimesh
from conftest import REPO
from PIL import Image

from attn6d_ros.bop import bop_cases
from attn6d_ros.geometry import axis_angle_to_matrix


def _dataset(root: Path) -> tuple[np.ndarray, np.ndarray]:
    mesh = trimesh.load(REPO / "models" / "demo_object.ply", process=False)
    mesh.apply_scale(1000.0)  # BOP models are in mm
    (root / "models").mkdir(parents=True)
    mesh.export(root / "models" / "obj_000007.ply")
    (root / "models" / "models_info.json").write_text(json.dumps({"7": {"diameter": 266.0,
        "symmetries_discrete": [[-1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]]}}))  # fmt: skip
    scene = root / "test" / "000002"
    (scene / "rgb").mkdir(parents=True)
    Image.fromarray(np.full((480, 640, 3), 90, np.uint8)).save(scene / "rgb" / "000005.png")
    K = np.array([[572.4, 0, 325.3], [0, 573.6, 242.0], [0, 0, 1.0]])
    R = axis_angle_to_matrix([0.2, 0.1, -0.3])
    t_mm = np.array([20.0, -10.0, 700.0])
    (scene / "scene_camera.json").write_text(json.dumps({"5": {"cam_K": K.flatten().tolist()}}))
    (scene / "scene_gt.json").write_text(
        json.dumps(
            {"5": [{"obj_id": 7, "cam_R_m2c": R.flatten().tolist(), "cam_t_m2c": t_mm.tolist()}]}
        )
    )
    (scene / "scene_gt_info.json").write_text(json.dumps({"5": [{"visib_fract": 0.75}]}))
    return R, t_mm


def test_bop_split_becomes_cases(tmp_path: Path) -> None:
    R, t_mm = _dataset(tmp_path)
    models, cases = bop_cases(tmp_path / "test", seed=3)
    assert list(models) == ["obj_000007"] and models["obj_000007"].symmetric
    assert abs(models["obj_000007"].diameter - 0.266) < 0.002  # mm file, metres inside
    (case,) = cases
    np.testing.assert_allclose(case.T_gt[:3, :3], R)
    np.testing.assert_allclose(case.T_gt[:3, 3], t_mm / 1000)
    assert case.occlusion == 0.25 and case.image.shape == (480, 640, 3)
    assert not np.allclose(case.T_init, case.T_gt)  # DeepIM noise without a results CSV


def test_initial_poses_from_a_results_csv(tmp_path: Path) -> None:
    R, t_mm = _dataset(tmp_path)
    csv = tmp_path / "init.csv"
    rows = ["scene_id,im_id,obj_id,score,R,t,time"]
    for score, dz in ((0.4, 50.0), (0.9, 10.0)):
        rows.append(f"2,5,7,{score},{' '.join(map(str, R.flatten()))},"
                    f"{t_mm[0]} {t_mm[1]} {t_mm[2] + dz},-1")  # fmt: skip
    csv.write_text("\n".join(rows) + "\n")
    _, (case,) = bop_cases(tmp_path / "test", init_csv=csv)
    np.testing.assert_allclose(
        case.T_init[:3, 3], (t_mm + np.array([0, 0, 10.0])) / 1000
    )  # the best score
