"""attn6d-refine-bag: bags written with rosbags from demo frames (raw, JPEG, PNG; sqlite3, MCAP) are refined
and read back; bad input; the CompressedImage decoder and the parameters-file reader. No ROS needed here; the
comparison with the live node is in test_refine_bag_ros.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from bag_support import (
    COMPRESSED_TOPIC,
    DETECTIONS_TOPIC,
    FRAME,
    IMAGE_TOPIC,
    INFO_TOPIC,
    demo_frames,
    read_bag,
    write_bag,
)
from node_support import REPO, make_checkpoint

from attn6d_ros.ros import refine_bag
from attn6d_ros.ros.codec import pose_to_matrix, stamp_ns
from attn6d_ros.ros.compressed_image import compressed_to_rgb, rgb_to_compressed_data
from attn6d_ros.ros.params import ParameterError
from attn6d_ros.ros.params_file import read_params_file

OUTPUTS = ("/refined/details", "/refined/detections", "/refined/pose", "/tf")


def _nested(flat: dict) -> dict:
    tree: dict = {}
    for name, value in flat.items():
        *parents, leaf = name.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def params_file(path: Path, **values) -> Path:
    """A parameters file like config/refine.yaml with `values` ({'sync.slop': 0.02, ...})."""
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": _nested(values)}}))
    return path


@pytest.fixture(scope="module")
def frames():
    return demo_frames(4)


@pytest.fixture(scope="module")
def tiny_params(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The node's test settings: a random 1-stage lite checkpoint, every score published, 1 CPU thread."""
    folder = tmp_path_factory.mktemp("params")
    checkpoint = make_checkpoint(folder / "m.pt")
    return params_file(
        folder / "tiny.yaml", checkpoint=str(checkpoint), device="cpu", cpu_threads=1, stages=1,
        min_score=0.0, guard=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def shipped_params(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped weights and objects, defaults otherwise, 1 CPU thread."""
    return params_file(tmp_path_factory.mktemp("params") / "shipped.yaml", cpu_threads=1)


def run_tool(capsys: pytest.CaptureFixture, *args) -> tuple[int, dict | None, str]:
    """(exit code, the JSON summary or None, stderr) of attn6d-refine-bag run in this process."""
    code = refine_bag.main([str(a) for a in args] + ["--no-progress"])
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) <= 1, captured.out
    return code, json.loads(lines[0]) if lines else None, captured.err


def _add_m(model, T: np.ndarray, T_gt: np.ndarray) -> float:
    from attn6d_ros.metrics import add_or_add_s

    return float(add_or_add_s(T, T_gt, model.points, model.symmetric))


# -- end to end ----------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("storage", "codec"), [("sqlite3", None), ("mcap", "jpeg"), ("sqlite3", "png")]
)
def test_bag_is_refined_with_the_image_headers_and_accurate_poses(
    tmp_path: Path, capsys, frames, shipped_params: Path, demo_model, storage: str, codec
) -> None:
    bag = write_bag(tmp_path / "in", frames, storage=storage, codec=codec)
    out = tmp_path / "out"
    code, summary, err = run_tool(capsys, bag, out, "--params", shipped_params, "--copy-inputs")
    assert code == 0, err
    assert (summary["images"], summary["frames"], summary["refined"]) == (4, 4, 4), summary
    assert summary["rejected"] == {} and summary["median_ms_per_frame"] > 0
    assert summary["unmatched_images"] == {
        "no_camera_info": 0,
        "no_detections": 0,
        "not_synchronized": 0,
    }

    got = read_bag(out)
    image_topic = COMPRESSED_TOPIC if codec else IMAGE_TOPIC
    assert set(got) == {*OUTPUTS, image_topic, INFO_TOPIC, DETECTIONS_TOPIC}
    stamps = [f.stamp_ns for f in frames]
    details = got["/refined/details"]
    assert [stamp_ns(m.header) for _, m in details] == stamps
    # Written when the frame was complete: its detections arrived 32 ms after the stamp (bag_support).
    assert [t for t, _ in details] == [s + 32_000_000 for s in stamps]
    for topic in OUTPUTS[1:3]:
        assert [stamp_ns(m.header) for _, m in got[topic]] == stamps
        assert all(m.header.frame_id == FRAME for _, m in got[topic])
    for _, tf in got["/tf"]:
        (transform,) = tf.transforms
        assert transform.header.frame_id == FRAME and transform.child_frame_id == "demo_object"
    # Refined accuracy against the ground truth the frames were rendered from.
    refined_ok, init_err, refined_err = 0, [], []
    for frame, (_, msg) in zip(frames, details, strict=True):
        (refinement,) = msg.refinements
        assert (
            msg.header.frame_id == FRAME
            and refinement.error == ""
            and len(refinement.stage_poses) == 4
        )
        T = pose_to_matrix(refinement.refined_pose)
        init_err.append(_add_m(demo_model, pose_to_matrix(refinement.initial_pose), frame.T_gt))
        refined_err.append(_add_m(demo_model, T, frame.T_gt))
        refined_ok += refined_err[-1] < 0.1 * demo_model.diameter
    assert refined_ok >= 3 and np.mean(refined_err) < 0.5 * np.mean(init_err), (
        init_err,
        refined_err,
    )
    # --copy-inputs: the three input topics, byte for byte the same messages.
    source = read_bag(bag)
    for topic in (image_topic, INFO_TOPIC, DETECTIONS_TOPIC):
        assert [t for t, _ in got[topic]] == [t for t, _ in source[topic]]


def test_outputs_equal_the_refiner_on_the_same_frame(
    tmp_path: Path, capsys, frames, tiny_params: Path
) -> None:
    from attn6d_ros.objects import load_objects
    from attn6d_ros.refiner import Refiner
    from attn6d_ros.ros.params_file import read_params_file

    bag = write_bag(tmp_path / "in", frames[:2], storage="mcap")
    code, summary, err = run_tool(capsys, bag, tmp_path / "out", "--params", tiny_params)
    assert code == 0 and summary["refined"] == 2, err
    details = [m for _, m in read_bag(tmp_path / "out")["/refined/details"]]
    cfg, _ = read_params_file(tiny_params)
    refiner = Refiner.from_checkpoint(cfg.checkpoint, "cpu")
    refiner.add_object(
        "demo_object", load_objects(REPO / "config" / "objects.yaml")["demo_object"]
    )
    from attn6d_ros.tools.demo import K_DEMO

    try:
        for frame, msg in zip(frames[:2], details, strict=True):
            (expected,) = refiner.refine(  # align is on by default, as in the node
                frame.rgb, K_DEMO, [("demo_object", frame.T_init)], stages=1, align=True
            )
            (refinement,) = msg.refinements
            assert np.allclose(pose_to_matrix(refinement.refined_pose), expected.T, atol=1e-9)
            assert refinement.score == pytest.approx(expected.score, abs=1e-6)
            assert np.allclose(pose_to_matrix(refinement.initial_pose), frame.T_init, atol=1e-9)
    finally:
        refiner.renderer.close()


def test_objects_without_weights_are_refined_by_the_alignment_alone_as_in_the_node(
    tmp_path: Path, capsys, frames
) -> None:
    # The object table says 'method: align' (no trained weights): no network stage runs for it.
    from attn6d_ros.objects import load_objects
    from attn6d_ros.refiner import Refiner
    from attn6d_ros.tools.demo import K_DEMO

    table = tmp_path / "objects.yaml"
    table.write_text(
        f"demo_object: {{mesh: {REPO / 'models' / 'demo_object.ply'}, method: align}}\n"
    )
    params = params_file(
        tmp_path / "p.yaml", checkpoint=str(make_checkpoint(tmp_path / "m.pt")), device="cpu",
        cpu_threads=1, stages=1, min_score=0.0, guard=False, objects_file=str(table),
    )  # fmt: skip
    bag = write_bag(tmp_path / "in", frames[:2])
    code, summary, err = run_tool(capsys, bag, tmp_path / "out", "--params", params)
    assert code == 0 and summary["refined"] == 2, err
    details = [m for _, m in read_bag(tmp_path / "out")["/refined/details"]]
    refiner = Refiner.from_checkpoint(tmp_path / "m.pt", "cpu")
    refiner.add_object("demo_object", load_objects(table)["demo_object"], network=False)
    try:
        for frame, msg in zip(frames[:2], details, strict=True):
            (refinement,) = msg.refinements
            assert refinement.error == "" and refinement.method == "align"
            assert list(refinement.stage_poses) == []  # no network stage
            (expected,) = refiner.refine(
                frame.rgb, K_DEMO, [("demo_object", frame.T_init)], stages=1, align=True,
                guard=False,
            )  # fmt: skip
            assert expected.method == "align"
            assert np.allclose(pose_to_matrix(refinement.refined_pose), expected.T, atol=1e-9)
    finally:
        refiner.renderer.close()


# Importing any of these fails in the subprocess below: a machine without ROS.
_ROS_MODULES = ("rclpy", "message_filters", "cv_bridge", "tf2_ros", "builtin_interfaces", "std_msgs",
                "sensor_msgs", "geometry_msgs", "vision_msgs", "tf2_msgs", "rosidl_runtime_py",
                "ament_index_python", "attn6d_ros.msg")  # fmt: skip


def test_the_tool_runs_without_any_ros_package(tmp_path: Path, frames, tiny_params: Path) -> None:
    bag = write_bag(tmp_path / "in", frames[:1], codec="png")
    code = (
        "import sys\n"
        f"for name in {_ROS_MODULES!r}:\n"
        "    sys.modules[name] = None  # import raises ImportError\n"
        "from attn6d_ros.ros import refine_bag\n"
        f"code = refine_bag.main([{str(bag)!r}, {str(tmp_path / 'out')!r}, '--params', {str(tiny_params)!r},"
        " '--no-progress'])\n"
        f"assert not [m for m in sys.modules if m.split('.')[0] in {_ROS_MODULES!r} and sys.modules[m]]\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["refined"] == 1


def test_console_script_runs(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "attn6d-refine-bag"
    if not script.exists():
        pytest.skip("attn6d-refine-bag is not installed in this environment (pip install -e .)")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--copy-inputs" in result.stdout


# -- selections and tracking ---------------------------------------------------------------------------------


def test_every_start_and_end_select_frames(
    tmp_path: Path, capsys, frames, tiny_params: Path
) -> None:
    bag = write_bag(tmp_path / "in", frames)
    code, summary, err = run_tool(
        capsys, bag, tmp_path / "a", "--params", tiny_params, "--every", "2"
    )
    assert code == 0, err
    assert (summary["frames"], summary["skipped_every"]) == (2, 2)
    stamps = [stamp_ns(m.header) for _, m in read_bag(tmp_path / "a")["/refined/details"]]
    assert stamps == [frames[0].stamp_ns, frames[2].stamp_ns]
    # Bag time: frames are 0.5 s apart, the bag starts with frame 0's image.
    # ... into another storage, under a namespace (/tf stays absolute).
    code, summary, err = run_tool(
        capsys, bag, tmp_path / "b", "--params", tiny_params, "--start", "0.4", "--end", "1.1",
        "--storage", "mcap", "--namespace", "cam1",
    )  # fmt: skip
    assert code == 0, err
    got = read_bag(tmp_path / "b")
    assert set(got) == {
        "/cam1/refined/details",
        "/cam1/refined/detections",
        "/cam1/refined/pose",
        "/tf",
    }
    assert len(list((tmp_path / "b").glob("*.mcap"))) == 1
    stamps = [stamp_ns(m.header) for _, m in got["/cam1/refined/details"]]
    assert stamps == [frames[1].stamp_ns, frames[2].stamp_ns] and summary["images"] == 2


def test_images_without_detections_are_tracked_after_wait_s(
    tmp_path: Path, capsys, frames, tiny_params: Path
) -> None:
    tracking = params_file(
        tmp_path / "t.yaml", **yaml.safe_load(tiny_params.read_text())["/**"]["ros__parameters"],
        tracking={"enabled": True, "wait_s": 0.2, "min_score": 0.0},
    )  # fmt: skip
    bag = write_bag(tmp_path / "in", frames, skip_detections=(1, 2))
    code, summary, err = run_tool(capsys, bag, tmp_path / "out", "--params", tracking)
    assert code == 0, err
    assert (summary["frames"], summary["tracked_frames"], summary["refined"]) == (4, 2, 4), summary
    details = [m for _, m in read_bag(tmp_path / "out")["/refined/details"]]
    assert [m.refinements[0].tracked for m in details] == [False, True, True, False]
    # Without tracking these images have no detections: counted, not refined.
    code, summary, _ = run_tool(capsys, bag, tmp_path / "plain", "--params", tiny_params)
    assert summary["frames"] == 2 and summary["unmatched_images"]["no_detections"] == 2


def test_max_detections_limits_the_objects_per_frame_as_in_the_node(
    tmp_path: Path, capsys, frames, tiny_params: Path
) -> None:
    limited = params_file(
        tmp_path / "m.yaml", **yaml.safe_load(tiny_params.read_text())["/**"]["ros__parameters"],
        max_detections=2,
    )  # fmt: skip
    bag = write_bag(tmp_path / "in", frames[:2], detections_per_frame=3)
    code, summary, err = run_tool(capsys, bag, tmp_path / "out", "--params", limited)
    assert code == 0, err
    assert (summary["refined"], summary["detections_over_max"]) == (4, 2), summary
    details = [m for _, m in read_bag(tmp_path / "out")["/refined/details"]]
    assert [[r.instance_id for r in m.refinements] for m in details] == [
        ["demo_object", "demo_object_1"]
    ] * 2


# -- bad input -----------------------------------------------------------------------------------------------


def test_a_missing_topic_lists_the_bags_topics_and_types(tmp_path: Path, capsys, frames) -> None:
    bag = write_bag(tmp_path / "in", frames[:1])
    code, summary, err = run_tool(capsys, bag, tmp_path / "out", "--image", "/camera/nope")
    assert code == 2 and summary is None
    assert "--image topic '/camera/nope' is not in the bag; it has:" in err
    assert f"{IMAGE_TOPIC} (sensor_msgs/msg/Image)" in err
    assert f"{DETECTIONS_TOPIC} (vision_msgs/msg/Detection3DArray)" in err
    assert not (tmp_path / "out").exists()


def test_a_topic_of_a_type_we_do_not_read_is_named(tmp_path: Path, capsys, frames) -> None:
    bag = write_bag(tmp_path / "in", frames[:1])
    code, _, err = run_tool(capsys, bag, tmp_path / "out", "--image", INFO_TOPIC)
    assert code == 2
    assert f"--image topic '{INFO_TOPIC}' has type 'sensor_msgs/msg/CameraInfo'" in err
    assert "sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage" in err


def test_without_topic_names_an_ambiguous_bag_is_an_error(tmp_path: Path, capsys, frames) -> None:
    bag = write_bag(tmp_path / "in", frames[:1], extra_topics=True)
    code, _, err = run_tool(capsys, bag, tmp_path / "out", "--detections", "/ground_truth")
    assert code == 2 and "has type 'geometry_msgs/msg/PoseStamped'" in err


def test_an_existing_out_is_refused_unless_overwrite(
    tmp_path: Path, capsys, frames, tiny_params: Path
) -> None:
    bag = write_bag(tmp_path / "in", frames[:1])
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run_tool(capsys, bag, out, "--params", tiny_params)
    assert code == 2 and f"output '{out}' exists; pass --overwrite" in err
    assert (out / "keep.txt").read_text() == "mine"
    code, summary, err = run_tool(capsys, bag, out, "--params", tiny_params, "--overwrite")
    assert code == 0 and summary["frames"] == 1, err
    assert not (out / "keep.txt").exists() and len(read_bag(out)["/refined/details"]) == 1
    code, _, err = run_tool(capsys, bag, bag, "--params", tiny_params, "--overwrite")
    assert code == 2 and "must not be IN" in err


def test_frames_without_camera_info_are_counted_and_reported(
    tmp_path: Path, capsys, frames, tiny_params: Path
) -> None:
    bag = write_bag(tmp_path / "in", frames, skip_info=(1, 3))
    code, summary, err = run_tool(capsys, bag, tmp_path / "out", "--params", tiny_params)
    assert code == 0, err
    assert summary["images"] == 4 and summary["frames"] == 2
    assert summary["unmatched_images"]["no_camera_info"] == 2
    assert "2 image(s) had no camera_info within sync.slop 0.02 s" in err


def test_a_corrupt_bag_stops_with_a_clear_error_and_out_keeps_the_frames_before(
    tmp_path: Path, capsys, frames, tiny_params: Path
) -> None:
    bag = write_bag(tmp_path / "in", frames, storage="mcap", corrupt_detections=2)
    out = tmp_path / "out"
    code, summary, err = run_tool(capsys, bag, out, "--params", tiny_params)
    assert code == 1
    assert f"({DETECTIONS_TOPIC}, vision_msgs/msg/Detection3DArray, bag time" in summary["error"]
    assert "cannot be decoded" in summary["error"] and "the bag is corrupt" in summary["error"]
    assert summary["frames"] == 2 and f"{out} holds the 2 frame(s) written before it" in err
    details = read_bag(out)["/refined/details"]  # readable
    assert [stamp_ns(m.header) for _, m in details] == [frames[0].stamp_ns, frames[1].stamp_ns]


@pytest.mark.parametrize(("storage", "hint"), [("sqlite3", "damaged or truncated"),
                                              ("mcap", "ends early")])  # fmt: skip
def test_a_truncated_bag_file_is_refused_clearly(
    tmp_path: Path, capsys, frames, storage: str, hint: str
) -> None:
    bag = write_bag(tmp_path / "in", frames[:2], storage=storage)
    (data,) = [f for f in bag.iterdir() if f.suffix in (".db3", ".mcap")]
    os.truncate(data, data.stat().st_size * 7 // 10)
    code, _, err = run_tool(capsys, bag, tmp_path / "out")
    assert code == 2 and f"input bag '{bag}' cannot be opened" in err and hint in err
    assert not (tmp_path / "out").exists()


def test_a_bag_without_metadata_is_read_from_its_storage_file(
    tmp_path: Path, capsys, frames, tiny_params: Path
) -> None:
    bag = write_bag(tmp_path / "in", frames[:2], storage="mcap")
    (bag / "metadata.yaml").unlink()
    code, summary, err = run_tool(capsys, bag, tmp_path / "out", "--params", tiny_params)
    assert code == 0 and summary["frames"] == 2, err
    shutil.copy(next(bag.glob("*.mcap")), bag / "second.mcap")
    code, _, err = run_tool(capsys, bag, tmp_path / "out2", "--params", tiny_params)
    assert code == 2 and "no metadata.yaml and 2 storage files" in err


def test_bad_arguments_are_named(tmp_path: Path, capsys, frames) -> None:
    bag = write_bag(tmp_path / "in", frames[:1])
    for args, message in (
        (["--every", "0"], "--every must be >= 1, got 0"),
        (["--start", "2", "--end", "1"], "--end (1.0) must be after --start (2.0)"),
        (["--params", str(tmp_path / "none.yaml")], "none.yaml' not found"),
        (
            ["--device", "gpu"],
            "parameter 'device' expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'",
        ),
    ):
        code, _, err = run_tool(capsys, bag, tmp_path / "out", *args)
        assert code == 2 and message in err, (args, err)
    code, _, err = run_tool(capsys, tmp_path / "nothing", tmp_path / "out")
    assert code == 2 and "does not exist" in err


# -- CompressedImage -----------------------------------------------------------------------------------------


class _Compressed:
    def __init__(self, data: bytes, fmt: str) -> None:
        self.data = np.frombuffer(data, dtype=np.uint8)
        self.format = fmt


def _rgb(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(24, 32, 3), dtype=np.uint8)


def test_png_decodes_exactly_and_jpeg_closely() -> None:
    rgb = _rgb()
    png = compressed_to_rgb(
        _Compressed(rgb_to_compressed_data(rgb, "png"), "bgr8; png compressed bgr8")
    )
    assert png.dtype == np.uint8 and np.array_equal(png, rgb)
    yy, xx = np.mgrid[0:64, 0:64]
    smooth = np.stack([xx * 4, yy * 4, np.full_like(xx, 128)], axis=2).astype(
        np.uint8
    )  # red grows to the right
    jpeg = compressed_to_rgb(
        _Compressed(rgb_to_compressed_data(smooth, "jpeg", 98), "rgb8; jpeg compressed bgr8")
    )
    assert jpeg.shape == smooth.shape and np.abs(jpeg.astype(int) - smooth).mean() < 3
    assert (
        compressed_to_rgb(_Compressed(rgb_to_compressed_data(rgb, "png"), "")).shape == rgb.shape
    )


def test_grey_and_16_bit_png_become_rgb() -> None:
    import io

    from PIL import Image

    grey = np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 80
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="PNG")
    rgb = compressed_to_rgb(_Compressed(buffer.getvalue(), "mono16; png compressed mono16"))
    assert rgb.shape == (24, 32, 3) and np.array_equal(
        rgb[:, :, 0], (grey.astype(int) + 128) // 257
    )
    buffer = io.BytesIO()
    Image.fromarray((grey // 256).astype(np.uint8)).save(buffer, format="PNG")
    rgb = compressed_to_rgb(_Compressed(buffer.getvalue(), "png"))
    assert np.array_equal(rgb[:, :, 2], grey // 256)


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        (b"", "jpeg", "compressed_image.data is empty (format 'jpeg')"),
        (
            b"not an image",
            "jpeg",
            "compressed_image.data (12 bytes, format 'jpeg') cannot be decoded",
        ),
        (
            b"x",
            "16UC1; compressedDepth png",
            "'16UC1; compressedDepth png' is a compressedDepth image",
        ),
        (
            b"x",
            "bgr8; tiff compressed bgr8",
            "compressed_image.format 'bgr8; tiff compressed bgr8' is not",
        ),
    ],
)
def test_bad_compressed_images_are_named(data: bytes, fmt: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compressed_to_rgb(_Compressed(data, fmt))


def test_a_truncated_jpeg_is_an_error() -> None:
    data = rgb_to_compressed_data(_rgb(), "jpeg")
    with pytest.raises(ValueError, match="cannot be decoded"):
        compressed_to_rgb(_Compressed(data[: len(data) // 2], "jpeg"))


# -- parameters file -----------------------------------------------------------------------------------------


def test_the_shipped_parameters_file_gives_the_defaults() -> None:
    from attn6d_ros.ros.params import NodeConfig

    cfg, unknown = read_params_file(REPO / "config" / "refine.yaml")
    assert cfg == NodeConfig() and unknown == []


def test_node_section_overrides_the_wildcard_and_unknown_names_are_returned(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        yaml.safe_dump({
            "/**": {"ros__parameters": {"min_score": 0.5, "sync": {"slop": 0.05}, "use_sim_time": True}},
            "/cam1/attn6d_refiner": {"ros__parameters": {"min_score": 0.7, "sync": {"queue_sise": 3}}},
            "other_node": {"ros__parameters": {"min_score": 0.9}},
        })
    )  # fmt: skip
    cfg, unknown = read_params_file(path)
    assert (cfg.min_score, cfg.sync_slop) == (0.7, 0.05) and unknown == ["sync.queue_sise"]


def test_removed_parameters_in_the_file_are_named_with_what_replaces_them(
    tmp_path: Path, capsys, frames
) -> None:
    # An older parameters file that still sets the region fit (removed, issue 27).
    folder = tmp_path / "params"
    folder.mkdir()
    params = params_file(
        folder / "old.yaml", checkpoint=str(make_checkpoint(folder / "m.pt")), device="cpu",
        cpu_threads=1, stages=1, min_score=0.0, guard=False, region_fit=True, region_fit_turn_deg=8.0,
        **{"sync.queue_sise": 3},
    )  # fmt: skip
    bag = write_bag(tmp_path / "in", frames[:1])
    code, summary, err = run_tool(capsys, bag, tmp_path / "out", "--params", params)
    assert code == 0 and summary["refined"] == 1, err
    assert "ignoring removed parameters ['region_fit', 'region_fit_turn_deg']" in err
    assert "'region_fit': the alignment (parameter 'align', on by default) replaces" in err
    assert "ignoring unknown parameters ['sync.queue_sise'] (typos?)" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            {"/**": {"ros__parameters": {"sync": {"slop": 1}}}},
            "parameter 'sync.slop' must be a float, got 1",
        ),
        (
            {"/**": {"ros__parameters": {"min_score": 2.0}}},
            r"parameter 'min_score' must be in \[0.0, 1.0\]",
        ),
        ({"attn6d": {"min_score": 0.5}}, "has no '/\\*\\*' or 'attn6d_refiner' section"),
    ],
)
def test_bad_parameters_files_are_named(tmp_path: Path, content: dict, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ParameterError, match=message):
        read_params_file(path)
