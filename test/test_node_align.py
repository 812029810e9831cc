"""The node's alignment (issue 27): the `align` parameters, templates prepared at start-up, tracking by the
alignment alone (tracking.method), and objects without trained weights.

ROS-free parts (frame_jobs.py, params.py) are tested with a recording stand-in for the Refiner; the node runs
in-process (as in test_node.py) on rendered frames of the demo object, with a random-init checkpoint whose
network predicts the identity update, so that what moves a pose is the alignment.
"""

import re
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from node_support import (
    OBJECTS_FILE,
    REPO,
    Peer,
    key_of,
    rclpy_session,
    refine_node,
)

from attn6d_ros.align import AlignConfig, TemplateConfig, default_cache_dir
from attn6d_ros.align.templates import template_key
from attn6d_ros.geometry import axis_angle_to_matrix
from attn6d_ros.pose_check import AgreementConfig
from attn6d_ros.ros import frame_jobs
from attn6d_ros.ros.params import NodeConfig, ParameterError
from attn6d_ros.ros.tracking import Track, Tracker

K = np.array([[550.0, 0.0, 319.5], [0.0, 550.0, 239.5], [0.0, 0.0, 1.0]])
# The drill seen from its side, as in the demo (tools/demo.py's R_BASE).
R_BASE = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


# -- ROS-free: parameters and frame jobs ----------------------------------------------------------------


def test_alignment_parameters_are_checked() -> None:
    cfg = NodeConfig()
    # On by default (issue 27): the shipped weights rely on the alignment.
    assert (cfg.align, cfg.align_turn_deg, cfg.align_only_turn_deg) == (True, 0.0, 15.0)
    assert cfg.tracking_method == "align"
    with pytest.raises(ParameterError, match=r"'tracking.method' must be one of .* got 'flow'"):
        NodeConfig.from_parameters({"tracking.method": "flow"})
    with pytest.raises(
        ParameterError, match=r"'align_turn_deg' must be in \[0.0, 90.0\], got 120"
    ):
        NodeConfig.from_parameters({"align_turn_deg": 120.0})
    with pytest.raises(ParameterError, match=r"'align' must be a bool, got 'yes'"):
        NodeConfig.from_parameters({"align": "yes"})


def test_removed_parameters_are_refused_by_name_with_what_replaces_them() -> None:
    # The depth search and the region fit are gone (issue 27); NodeConfig no longer has them.
    with pytest.raises(ParameterError, match=r"removed parameters \['region_fit'\]") as info:
        NodeConfig.from_parameters({"stages": 2, "region_fit": True})
    assert info.value.name == "region_fit"
    assert "'region_fit': the alignment (parameter 'align', on by default)" in str(info.value)
    with pytest.raises(ParameterError, match=r"'region_fit_turn_deg': use 'align_turn_deg'"):
        NodeConfig.from_parameters({"region_fit_turn_deg": 8.0})
    with pytest.raises(TypeError, match="depth_search"):
        NodeConfig(depth_search=True)


class _RecordingRefiner:
    """Stands in for the Refiner: records each refine call's arguments."""

    def __init__(self) -> None:
        self.align_config = AlignConfig()
        self.align_only_config = AlignConfig(start_turn_deg=15.0)
        self.agreement_config = AgreementConfig()
        self.calls: list[dict] = []

    def refine(self, rgb, K, detections, **kwargs):
        self.calls.append(kwargs)
        return [SimpleNamespace(elapsed_ms=1.0, T=T) for _, T in detections]


def _tracked_jobs() -> list[frame_jobs.Job]:
    tracker = Tracker()
    tracker.replace([Track("mug", "", "demo_object", np.eye(4), 0.9, 10.0)], 0.0)
    cfg = NodeConfig(tracking_enabled=True, tracking_min_score=0.0)
    return frame_jobs.tracked_jobs(tracker, 10.1, cfg)


def test_a_tracked_frame_is_refined_by_the_alignment_alone_with_one_start() -> None:
    refiner = _RecordingRefiner()
    cfg = NodeConfig(stages=3, align_turn_deg=10.0, tracking_enabled=True)
    frame_jobs.refine_jobs(refiner, np.zeros((4, 4, 3), np.uint8), K, _tracked_jobs(), cfg)
    (call,) = refiner.calls
    assert (call["stages"], call["align"]) == (0, True)
    assert "depth_search" not in call and "region_fit" not in call  # removed (issue 27)
    assert call["align_config"].start_turn_deg == 0.0 and call["guard"] is True
    # The parameters' starts still reach the Refiner for frames with detections.
    assert refiner.align_config.start_turn_deg == 10.0


def test_the_guards_limit_on_aligned_outlines_is_a_parameter() -> None:
    assert NodeConfig().guard_max_align_energy == AgreementConfig().max_align_energy == 2.2
    refiner = _RecordingRefiner()
    cfg = NodeConfig.from_parameters({"guard_max_align_energy": 1.6})
    frame_jobs.refine_jobs(refiner, np.zeros((4, 4, 3), np.uint8), K, _tracked_jobs(), cfg)
    assert refiner.agreement_config.max_align_energy == 1.6
    assert refiner.agreement_config.guard_margin == AgreementConfig().guard_margin
    with pytest.raises(
        ParameterError, match=r"'guard_max_align_energy' must be in \[0.1, 100.0\], got 0.0"
    ):
        NodeConfig.from_parameters({"guard_max_align_energy": 0.0})


def test_tracking_method_network_refines_tracks_as_detections() -> None:
    refiner = _RecordingRefiner()
    cfg = NodeConfig(stages=3, align=True, tracking_enabled=True, tracking_method="network")
    frame_jobs.refine_jobs(refiner, np.zeros((4, 4, 3), np.uint8), K, _tracked_jobs(), cfg)
    (call,) = refiner.calls
    assert (call["stages"], call["align"]) == (3, True) and "align_config" not in call


def test_detections_get_the_align_parameters() -> None:
    refiner = _RecordingRefiner()
    cfg = NodeConfig(align=True, align_turn_deg=6.0, align_only_turn_deg=20.0)
    jobs = [frame_jobs.Job("mug", "", "demo_object", None, np.eye(4), None, "detections[0]")]
    frame_jobs.refine_jobs(refiner, np.zeros((4, 4, 3), np.uint8), K, jobs, cfg)
    (call,) = refiner.calls
    assert (call["stages"], call["align"]) == (None, True) and "align_config" not in call
    assert refiner.align_config.start_turn_deg == 6.0
    assert refiner.align_only_config.start_turn_deg == 20.0


def test_a_tracked_pose_whose_alignment_failed_is_not_published() -> None:
    (job,) = _tracked_jobs()
    result = SimpleNamespace(error=None, score=0.9, guard=None, align_error="12 usable lines < 20")
    error, published = frame_jobs.outcome(job, result, min_score=0.2)
    assert not published and "alignment failed: 12 usable lines < 20" in error
    # From a detection, the network's pose is kept and published (the alignment is an extra).
    detected = frame_jobs.Job("mug", "", "demo_object", None, np.eye(4), None, "detections[0]")
    assert frame_jobs.outcome(detected, result, min_score=0.2) == (None, True)


# -- the node, in-process, on rendered frames ----------------------------------------------------------------


@pytest.fixture(scope="module")
def align_cache(tmp_path_factory: pytest.TempPathFactory, demo_model) -> Path:
    """A template cache of these tests' own, seeded from the user's cache when it has the demo object's
    templates (building them takes about a minute on a CPU)."""
    cache = tmp_path_factory.mktemp("align_cache")
    name = f"{template_key(demo_model, TemplateConfig())}.npz"
    cached = default_cache_dir() / "align_templates" / name
    if cached.is_file():
        (cache / "align_templates").mkdir()
        shutil.copy(cached, cache / "align_templates" / name)
    return cache


@pytest.fixture
def ros(ros_domain: int, align_cache: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ATTN6D_CACHE_DIR", str(align_cache))
    with rclpy_session():
        yield


_node = refine_node  # the in-process node (node_support)


def _true_pose(i: int) -> np.ndarray:
    """Frame i of a slow motion: 1.5 degrees and about 3 mm per frame."""
    T = np.eye(4)
    T[:3, :3] = axis_angle_to_matrix(np.radians([0.0, 1.5 * i, 0.5 * i])) @ R_BASE
    T[:3, 3] = [-0.02 + 0.003 * i, 0.01, 0.62 + 0.002 * i]
    return T


@pytest.fixture(scope="module")
def frames(demo_model) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, true pose) of six frames: the lit demo object over a blocky background."""
    from attn6d_ros.render import Light, Renderer

    rng = np.random.default_rng(3)
    blocks = rng.uniform(40, 220, size=(6, 8, 3))
    background = np.kron(blocks, np.ones((80, 80, 1)))
    out = []
    with Renderer() as renderer:
        for i in range(6):
            T = _true_pose(i)
            r = renderer.render(
                demo_model, T, K, 640, 480, light=Light(direction_cam=(0.3, -0.5, -1.0))
            )
            image = np.where(r.mask[:, :, None], r.rgb.astype(np.float64), background)
            image += rng.normal(0.0, 3.0, size=image.shape)
            out.append((np.clip(image, 0, 255).astype(np.uint8), T))
    return out


def _send(node, peer: Peer, t: float, rgb: np.ndarray, items: list | None, timeout: float = 60.0):
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(peer.node)
    peer.publish_frame(rgb, K, t, items)
    assert peer.spin_until(lambda: peer.details(t) is not None, timeout, executor), (
        "no refined/details"
    )
    peer.spin_until(lambda: False, 0.2, executor)
    executor.shutdown()
    return peer.details(t)


def _add_d(model, T: np.ndarray, T_gt: np.ndarray) -> float:
    from attn6d_ros.metrics import add_or_add_s

    return add_or_add_s(T, T_gt, model.points, model.symmetric) / model.diameter


def _coarse(T: np.ndarray) -> np.ndarray:
    """About what a detector gives: 6 degrees and 1 / 1 / 3 cm off."""
    moved = T.copy()
    moved[:3, :3] = axis_angle_to_matrix(np.radians([4.0, -3.0, 3.0])) @ T[:3, :3]
    moved[:3, 3] += [0.01, -0.01, 0.03]
    return moved


@pytest.mark.ros
def test_tracking_follows_the_object_by_the_alignment_alone(
    ros: None, checkpoint: Path, frames, demo_model, capfd: pytest.CaptureFixture
) -> None:
    from attn6d_ros.ros.codec import pose_to_matrix

    node = _node(checkpoint, align=True, **{"tracking.enabled": True, "tracking.min_score": 0.0})
    log = capfd.readouterr().err
    assert re.search(r"alignment templates of 'demo_object' (loaded from the cache|built and "
                     r"cached) in \d+ ms \(start-up\)", log), log  # fmt: skip
    peer = Peer()
    t0 = time.time()
    rgb, T_gt = frames[0]
    first = _send(node, peer, t0, rgb, [("mug", "demo_object", _coarse(T_gt))]).refinements[0]
    # From a detection: the network's stage (identity here), then the alignment.
    assert first.error == "" and not first.tracked and len(first.stage_poses) == 1
    assert first.method == "network+align"
    assert _add_d(demo_model, pose_to_matrix(first.refined_pose), T_gt) < 0.1
    previous = pose_to_matrix(first.refined_pose)
    for i in range(1, 6):
        rgb, T_gt = frames[i]
        t = t0 + 0.1 * i
        (tracked,) = _send(node, peer, t, rgb, []).refinements
        assert tracked.tracked and tracked.error == "", tracked.error
        assert tracked.stage_poses == [] and tracked.method == "align"  # no network
        assert np.allclose(pose_to_matrix(tracked.initial_pose), previous, atol=1e-6)
        previous = pose_to_matrix(tracked.refined_pose)
        assert _add_d(demo_model, previous, T_gt) < 0.1, i
        assert key_of(t) in peer.outputs["refined/pose"]
    node.destroy_node()


@pytest.mark.ros
def test_tracking_method_network_runs_the_stages_on_tracks(
    ros: None, checkpoint: Path, frames
) -> None:
    node = _node(
        checkpoint,
        **{"tracking.enabled": True, "tracking.min_score": 0.0, "tracking.method": "network"},
    )  # align on by default: the tracks go through the stages and then the alignment
    peer = Peer()
    t0 = time.time()
    rgb, T_gt = frames[0]
    _send(node, peer, t0, rgb, [("mug", "demo_object", T_gt)])
    (tracked,) = _send(node, peer, t0 + 0.1, frames[1][0], []).refinements
    node.destroy_node()
    assert tracked.tracked and tracked.error == "" and len(tracked.stage_poses) == 1
    assert tracked.method == "network+align"


@pytest.mark.ros
def test_a_tracked_pose_whose_alignment_fails_is_not_published(
    ros: None, checkpoint: Path, frames, demo_model
) -> None:
    node = _node(checkpoint, **{"tracking.enabled": True, "tracking.min_score": 0.0})
    peer = Peer()
    t0 = time.time()
    rgb, T_gt = frames[0]
    _send(node, peer, t0, rgb, [("mug", "demo_object", T_gt)])
    grey = np.full_like(rgb, 128)  # the object is gone: nothing to align to at its border
    T_edge = T_gt.copy()
    T_edge[0, 3] = (639 - K[0, 2]) / K[0, 0] * T_edge[2, 3] + 0.6 * demo_model.diameter
    node._tracker.replace([Track("mug", "", "demo_object", T_edge, 0.9, t0)], 0.0)
    t1 = t0 + 0.1
    (lost,) = _send(node, peer, t1, grey, []).refinements
    assert lost.tracked and "alignment failed" in lost.error and lost.method == "align"
    assert key_of(t1) not in peer.outputs["refined/pose"]
    assert len(node._tracker) == 0  # the track is dropped
    node.destroy_node()


@pytest.mark.ros
def test_objects_without_weights_are_refined_by_the_alignment_alone(
    ros: None, tmp_path: Path, frames, demo_model, capfd: pytest.CaptureFixture
) -> None:
    """A checkpoint trained on another object: the table's demo_object ('auto') and 'new' ('align') are
    aligned alone; 'known' ('network') goes through the stages."""
    from attn6d_ros.checkpoint import save_checkpoint
    from attn6d_ros.network import ModelConfig, RefinerNet
    from attn6d_ros.refiner import Refiner
    from attn6d_ros.ros.codec import pose_to_matrix

    checkpoint = tmp_path / "other.pt"
    net = RefinerNet(ModelConfig.lite(crop_size=64, shared_stages=True, num_stages=4))
    save_checkpoint(checkpoint, net, metadata={"objects": {"other": {"diameter": 0.1}}})
    mesh = REPO / "models" / "demo_object.ply"
    table = tmp_path / "objects.yaml"
    table.write_text(
        f"demo_object: {{mesh: {mesh}}}\nnew: {{mesh: {mesh}, method: align}}\n"
        f"known: {{mesh: {mesh}, method: network}}\n"
    )
    node = _node(checkpoint, objects_file=str(table))
    log = capfd.readouterr().err
    assert "refined by the alignment alone" in log and "['demo_object', 'new']" in log
    assert "alignment templates of 'new' loaded from the cache" in log  # the same mesh
    # align is on by default: the object with weights is aligned after its stages.
    assert "alignment templates of 'known' loaded from the cache" in log
    rgb, T_gt = frames[2]
    start = _coarse(T_gt)
    items = [("a", "demo_object", start), ("b", "new", start), ("c", "known", start)]
    details = _send(node, Peer(), time.time(), rgb, items)
    node.destroy_node()
    auto, new, known = details.refinements
    assert auto.error == new.error == known.error == ""
    assert auto.stage_poses == new.stage_poses == [] and len(known.stage_poses) == 1
    assert (auto.method, new.method, known.method) == ("align", "align", "network+align")
    assert _add_d(demo_model, pose_to_matrix(new.refined_pose), T_gt) < 0.1
    # Exactly what the library does with such an object.
    refiner = Refiner.from_checkpoint(checkpoint, "cpu")
    refiner.add_object("new", demo_model, network=False)
    (expected,) = refiner.refine(rgb, K, [("new", start)], stages=1, guard=False)
    refiner.renderer.close()
    assert expected.method == "align"
    assert np.allclose(pose_to_matrix(new.refined_pose), expected.T, atol=1e-6)


@pytest.mark.ros
def test_switching_align_on_at_run_time_prepares_the_templates(
    ros: None, checkpoint: Path, frames, capfd: pytest.CaptureFixture
) -> None:
    from rclpy.parameter import Parameter

    node = _node(checkpoint, align=False)  # align is on by default
    assert "alignment templates" not in capfd.readouterr().err  # nothing asks for the alignment
    (result,) = node.set_parameters([Parameter("align", value=True)])
    assert result.successful and node.config.align
    rgb, T_gt = frames[0]
    (refinement,) = _send(node, Peer(), time.time(), rgb, [("", "demo_object", T_gt)]).refinements
    node.destroy_node()
    assert refinement.error == ""
    log = capfd.readouterr().err
    assert re.search(r"alignment templates of 'demo_object' (loaded from the cache|built and "
                     r"cached) in \d+ ms \(run-time change of align", log), log  # fmt: skip


def test_objects_file_default_is_unchanged() -> None:
    from attn6d_ros.objects import read_object_table

    assert read_object_table(OBJECTS_FILE)["demo_object"].method == "auto"


@pytest.mark.ros
def test_the_overlay_of_a_pose_refined_by_the_alignment_alone(
    ros: None, checkpoint: Path, tmp_path: Path, frames, capfd: pytest.CaptureFixture
) -> None:
    # No network stage ran, so there is no attention to draw (an IndexError in the node before).
    from rclpy.executors import SingleThreadedExecutor

    table = tmp_path / "objects.yaml"
    table.write_text(
        f"demo_object: {{mesh: {REPO / 'models' / 'demo_object.ply'}, method: align}}\n"
    )
    node = _node(checkpoint, objects_file=str(table))
    peer = Peer()
    peer.subscribe_overlay()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(peer.node)
    assert peer.spin_until(lambda: node._pub_overlay.get_subscription_count() > 0, 10, executor)
    executor.shutdown()
    rgb, T_gt = frames[1]
    t = time.time()
    (refinement,) = _send(node, peer, t, rgb, [("", "demo_object", _coarse(T_gt))]).refinements
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(peer.node)
    assert peer.spin_until(lambda: key_of(t) in peer.overlays, 30, executor)
    executor.shutdown()
    errors = node._stats.counts["internal_errors"]
    node.destroy_node()
    assert refinement.method == "align" and refinement.error == ""
    assert errors == 0 and "internal error" not in capfd.readouterr().err
