"""The refinement node in-process: parameters, outputs against the Refiner itself, run-time changes.

The node runs in this process with a SingleThreadedExecutor next to a test peer (node_support.Peer); the
cross-process behaviour (QoS, discovery, start-up, robustness) is in test_node_process.py.
"""

import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from node_support import (
    FRAME,
    K_VGA,
    OBJECTS_FILE,
    REPO,
    Peer,
    key_of,
    make_checkpoint,
    pose,
    refine_node,
    textured_image,
)

from attn6d_ros.ros.codec import stamp_ns
from attn6d_ros.ros.params import NodeConfig, ParameterError

pytestmark = pytest.mark.ros


_node = refine_node  # the in-process node (node_support)


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def test_config_yaml_lists_every_parameter_with_its_default() -> None:
    tree = yaml.safe_load((REPO / "config" / "refine.yaml").read_text())
    values = _flatten(tree["/**"]["ros__parameters"])
    assert values.keys() == NodeConfig().as_parameters().keys()
    assert NodeConfig.from_parameters(values) == NodeConfig()
    assert values["checkpoint"] == "package://attn6d_ros/models/demo_refiner.pt"
    assert values["objects_file"] == "package://attn6d_ros/config/objects.yaml"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "device",
            "gpu",
            "parameter 'device' expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'",
        ),
        ("device", "cuda:x", "got 'cuda:x'"),
        ("min_score", 1.5, r"parameter 'min_score' must be in \[0.0, 1.0\], got 1.5"),
        ("sync.slop", 0.0, r"parameter 'sync.slop' must be in \[1e-06, 10.0\], got 0.0"),
        ("sync.queue_size", 0, r"parameter 'sync.queue_size' must be in \[1, 1000\], got 0"),
        (
            "sync.queue_size",
            "abc",
            r"parameter 'sync.queue_size' must be a int, got 'abc' \(str\)",
        ),
        (
            "sync.slop",
            1,
            r"parameter 'sync.slop' must be a float, got 1 \(int\) \(write a decimal point",
        ),
        ("tf_prefix", "/robot/", "parameter 'tf_prefix' must not start with '/'.*got '/robot/'"),
        ("tf_prefix", "a b", "parameter 'tf_prefix' may contain only.*got 'a b'"),
        (
            "qos.image.reliability",
            "fast",
            "must be one of \\('best_effort', 'reliable'\\), got 'fast'",
        ),
        ("objects_file", "/nonexistent/objects.yaml", "parameter 'objects_file'.*not found"),
    ],
)
def test_bad_parameter_values_name_the_parameter_and_the_value(
    ros: None, checkpoint: Path, name: str, value: object, message: str
) -> None:
    with pytest.raises(ParameterError, match=message) as info:
        _node(checkpoint, **{name: value})
    assert info.value.name == name


def test_missing_checkpoint_is_a_start_up_error(ros: None, tmp_path: Path) -> None:
    with pytest.raises(
        ParameterError, match=f"parameter 'checkpoint': file not found: {tmp_path}/none.pt"
    ):
        _node(tmp_path / "none.pt")


def test_too_many_stages_for_a_per_stage_model_is_a_start_up_error(
    ros: None, tmp_path: Path
) -> None:
    per_stage = make_checkpoint(tmp_path / "p.pt", shared=False, stages=2)
    with pytest.raises(
        ParameterError, match="parameter 'stages' is 3 but the checkpoint's model has 2"
    ):
        _node(per_stage, stages=3)


def test_explicit_cuda_without_cuda_is_an_error_not_a_fallback(
    ros: None, checkpoint: Path
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ParameterError, match="device 'cuda' requested but CUDA is not available"):
        _node(checkpoint, device="cuda")


def _exchange(node, peer: Peer, t: float, items: list, rgb=None, timeout: float = 30.0):
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(peer.node)
    rgb = textured_image() if rgb is None else rgb
    peer.publish_frame(rgb, K_VGA, t, items)
    assert peer.spin_until(lambda: peer.details(t) is not None, timeout, executor), (
        "no refined/details"
    )
    peer.spin_until(lambda: False, 0.3, executor)  # the other topics of the same frame
    executor.shutdown()
    return peer.details(t)


def test_outputs_equal_the_refiner_and_carry_the_image_header(ros: None, checkpoint: Path) -> None:
    from attn6d_ros.objects import load_objects
    from attn6d_ros.refiner import Refiner

    node = _node(checkpoint, stages=2, tf_prefix="obj/")
    peer = Peer()
    t = time.time()
    rgb = textured_image()
    T1, T2, T3 = pose(-0.08), pose(0.08, yaw_deg=-10.0), pose(0.0, 0.05, 0.7)
    details = _exchange(
        node,
        peer,
        t,
        [("", "demo_object", T1), ("", "demo_object", T2), ("left", "demo_object", T3)],
    )
    node.destroy_node()

    # The same refinement, run directly: the node must publish exactly what the Refiner computes.
    refiner = Refiner.from_checkpoint(checkpoint, "cpu")
    model = load_objects(OBJECTS_FILE)["demo_object"]
    refiner.add_object("demo_object", model)
    # align is on by default (issue 27): the node aligns after the stages.
    expected = refiner.refine(
        rgb, K_VGA, [("demo_object", T) for T in (T1, T2, T3)], stages=2, align=True
    )
    refiner.renderer.close()

    assert details.header.frame_id == FRAME and key_of(t) == stamp_ns(details.header)
    assert [r.instance_id for r in details.refinements] == ["demo_object", "demo_object_1", "left"]
    from attn6d_ros.ros.codec import pose_to_matrix

    for refinement, result in zip(details.refinements, expected, strict=True):
        assert refinement.error == "" and len(refinement.stage_poses) == 2
        assert np.allclose(pose_to_matrix(refinement.refined_pose), result.T, atol=1e-6)
        assert refinement.score == pytest.approx(result.score, abs=1e-6)
    assert details.compute_ms > 0 and 0 < details.latency_ms < 30_000

    (array,) = peer.outputs["refined/detections"][key_of(t)]
    assert array.header == details.header and [d.id for d in array.detections] == ["", "", "left"]
    for detection, result in zip(array.detections, expected, strict=True):
        assert detection.header == details.header
        assert detection.results[0].hypothesis.class_id == "demo_object"
        assert np.allclose(pose_to_matrix(detection.results[0].pose.pose), result.T, atol=1e-6)
        assert np.allclose(
            [detection.bbox.size.x, detection.bbox.size.y, detection.bbox.size.z],
            model.extent,
            atol=1e-6,
        )
    poses = peer.outputs["refined/pose"][key_of(t)]
    assert len(poses) == 3 and all(p.header == details.header for p in poses)
    (tf,) = [m for m in peer.tf if m.transforms[0].header.stamp == details.header.stamp]
    assert [x.child_frame_id for x in tf.transforms] == [
        "obj/demo_object",
        "obj/demo_object_1",
        "obj/left",
    ]
    assert all(x.header.frame_id == FRAME for x in tf.transforms)


def test_details_say_the_removed_searches_did_not_run(ros: None, checkpoint: Path) -> None:
    # The depth search and the region fit are gone (issue 27); their fields in refined/details stay at
    # "not run", and the alignment (on by default) is what refined the pose after the stage.
    node = _node(checkpoint, stages=1)
    details = _exchange(node, Peer(), time.time(), [("", "demo_object", pose(0.0))])
    node.destroy_node()
    (refinement,) = details.refinements
    assert refinement.error == "" and refinement.fit_motion_m == -1.0
    assert refinement.depth_factor == 0.0 and refinement.method == "network+align"


def test_scores_below_min_score_are_reported_not_published(ros: None, checkpoint: Path) -> None:
    node = _node(checkpoint, min_score=1.0)
    peer = Peer()
    t = time.time()
    details = _exchange(node, peer, t, [("", "demo_object", pose())])
    node.destroy_node()
    (refinement,) = details.refinements
    assert refinement.error.startswith(f"score {refinement.score:.3f} is below min_score 1.0")
    assert len(refinement.stage_poses) == 1  # refined, but not trusted
    (array,) = peer.outputs["refined/detections"][key_of(t)]
    assert array.detections == [] and not peer.outputs["refined/pose"].get(key_of(t))
    assert not any(m.transforms[0].header.stamp == details.header.stamp for m in peer.tf)


def test_overlay_is_drawn_only_while_subscribed(
    ros: None, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from attn6d_ros.ros import overlay

    calls = []
    real = overlay.draw_overlay
    monkeypatch.setattr(overlay, "draw_overlay", lambda *a: calls.append(1) or real(*a))
    node = _node(checkpoint)
    peer = Peer()
    t0 = time.time()
    _exchange(node, peer, t0, [("", "demo_object", pose())])
    assert calls == []
    peer.subscribe_overlay()
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor()
    executor.add_node(peer.node)
    assert peer.spin_until(lambda: node._pub_overlay.get_subscription_count() > 0, 10, executor)
    executor.shutdown()
    t1 = t0 + 1.0
    _exchange(node, peer, t1, [("", "demo_object", pose())])
    # The overlay is drawn after the frame's other outputs: on a busy CPU it may take a while.
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(peer.node)
    assert peer.spin_until(lambda: key_of(t1) in peer.overlays, 30, executor)
    executor.shutdown()
    node.destroy_node()
    assert calls == [1]
    overlay_msg = peer.overlays[key_of(t1)]
    assert (overlay_msg.encoding, overlay_msg.width, overlay_msg.height) == ("rgb8", 640, 480)
    assert overlay_msg.header.frame_id == FRAME


def test_run_time_parameter_changes_are_validated_and_applied(ros: None, checkpoint: Path) -> None:
    from rclpy.parameter import Parameter

    node = _node(checkpoint)
    try:
        ok = node.set_parameters(
            [Parameter("min_score", value=0.7), Parameter("tf_prefix", value="cam1/")]
        )
        assert all(r.successful for r in ok)
        assert (node.config.min_score, node.config.tf_prefix) == (0.7, "cam1/")
        (bad,) = node.set_parameters([Parameter("tf_prefix", value="/x")])
        assert not bad.successful and "got '/x'" in bad.reason and node.config.tf_prefix == "cam1/"
        (read_only,) = node.set_parameters([Parameter("device", value="cpu")])
        assert not read_only.successful and "read-only" in read_only.reason
        (range_error,) = node.set_parameters([Parameter("tracking.min_score", value=2.0)])
        assert not range_error.successful
    finally:
        node.destroy_node()


def test_stages_change_is_checked_against_the_model(ros: None, tmp_path: Path) -> None:
    from rclpy.parameter import Parameter

    node = _node(make_checkpoint(tmp_path / "p.pt", shared=False, stages=2), stages=1)
    try:
        (too_many,) = node.set_parameters([Parameter("stages", value=3)])
        assert not too_many.successful and "parameter 'stages' is 3" in too_many.reason
        (fine,) = node.set_parameters([Parameter("stages", value=2)])
        assert fine.successful and node.config.stages == 2
    finally:
        node.destroy_node()


def test_unknown_parameters_are_named_in_a_warning(
    ros: None, checkpoint: Path, capfd: pytest.CaptureFixture
) -> None:
    node = _node(checkpoint, **{"sync.queue_sise": 5})  # a typo of sync.queue_size
    node.destroy_node()
    assert "ignoring unknown parameters ['sync.queue_sise'] (typos?)" in capfd.readouterr().err


def test_removed_parameters_are_named_in_a_warning_with_what_replaces_them(
    ros: None, checkpoint: Path, capfd: pytest.CaptureFixture
) -> None:
    # An older parameters file that still sets the depth search and the region fit (issue 27).
    node = _node(checkpoint, region_fit=True, depth_search=False, region_fit_turn_deg=8.0)
    cfg = node.config
    node.destroy_node()
    err = capfd.readouterr().err
    assert (
        "ignoring removed parameters ['depth_search', 'region_fit', 'region_fit_turn_deg']" in err
    )
    assert (
        "'region_fit': the alignment (parameter 'align', on by default) replaces the region fit"
        in err
    )
    assert "'region_fit_turn_deg': use 'align_turn_deg'" in err
    assert "unknown parameters" not in err  # said once, as removed, not as typos
    assert cfg.align  # what replaces them runs


def test_max_detections_keeps_the_highest_scored_and_warns_how_many_were_dropped(
    ros: None, checkpoint: Path, capfd: pytest.CaptureFixture
) -> None:
    # Issue 30: a detector that emits hundreds of boxes must not take the computer down.
    from node_support import camera_info_msg, detections_msg, image_msg
    from rclpy.executors import SingleThreadedExecutor

    node = _node(checkpoint, max_detections=3)
    peer = Peer()
    t = time.time()
    scores = [0.2, 0.9, 0.1, 0.8, 0.3, 0.95]
    items = [(f"d{i}", "demo_object", pose(x=0.01 * i)) for i in range(len(scores))]
    detections = detections_msg(t, items)
    for detection, score in zip(detections.detections, scores, strict=True):
        detection.results[0].hypothesis.score = score
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(peer.node)
    rgb = textured_image()
    peer.pub_image.publish(image_msg(rgb, t))
    peer.pub_info.publish(camera_info_msg(K_VGA, 640, 480, t))
    peer.pub_detections.publish(detections)
    assert peer.spin_until(lambda: peer.details(t) is not None, 30.0, executor)
    executor.shutdown()
    counted = node._stats.counts["detections_over_max"]
    node.destroy_node()
    # The three highest-scored (0.95, 0.9, 0.8), in their input order; the others are not reported.
    assert [r.instance_id for r in peer.details(t).refinements] == ["d1", "d3", "d5"]
    assert counted == 3
    log = capfd.readouterr().err
    assert "has 6 detections, more than max_detections 3: the 3 lowest-scored were dropped" in log


def test_limit_detections_ranks_by_score_and_keeps_input_order() -> None:
    from attn6d_ros.ros.codec import CoarseDetection, limit_detections

    def detection(index: int, score: float) -> CoarseDetection:
        return CoarseDetection(index, f"d{index}", "mug", None, np.eye(4), None, score)

    detections = [
        detection(0, 0.5),
        detection(1, float("-inf")),
        detection(2, 0.5),
        detection(3, 0.7),
    ]
    kept, dropped = limit_detections(detections, 2)
    assert [d.index for d in kept] == [0, 3] and dropped == 2  # ties: the earlier one
    assert limit_detections(detections, 4) == (detections, 0)
