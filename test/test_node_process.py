"""The refinement node as its own process (as users run it) with a test peer in this process: every output,
the robustness list of issue 6, tracking and its reset, and start-up failures.

Each test starts its own node (`python -m attn6d_ros.node --ros-args -p ...`) in its own ROS domain, with a
random-init 64 px checkpoint: the poses are meaningless, so the tests check what the node does with them
(headers, names, errors, what is published and what not); test_node.py checks the poses against the Refiner.
"""

import re
import time
from pathlib import Path

import numpy as np
import pytest
from node_support import (
    FRAME,
    K_VGA,
    REPO,
    NodeProcess,
    Peer,
    base_params,
    camera_info_msg,
    detections_msg,
    header_msg,
    image_msg,
    key_of,
    pose,
    textured_image,
)

from attn6d_ros.ros.codec import stamp_text

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture
def start(ros_domain: int, tmp_path: Path, checkpoint: Path):
    """start(**params) -> (NodeProcess, Peer): a ready node process and a matched peer in this process."""
    import rclpy

    rclpy.init()
    started: list[NodeProcess] = []

    def _start(*, peer_depth: int = 10, overlay: bool = False, **params):
        node = NodeProcess(tmp_path, base_params(checkpoint, **params))
        started.append(node)
        node.wait_ready()
        peer = Peer(input_depth=peer_depth)
        if overlay:
            peer.subscribe_overlay()
            peer.subscribe_markers()
        assert peer.wait_for_node(), f"no discovery between the peer and the node:\n{node.log()}"
        return node, peer

    yield _start
    for node in started:
        node.stop()
    rclpy.shutdown()


def _wait_details(peer: Peer, node: NodeProcess, t: float, timeout: float = 60.0):
    assert peer.spin_until(lambda: peer.details(t) is not None, timeout), (
        f"no details:\n{node.log()}"
    )
    peer.spin_until(lambda: False, 0.3)  # the frame's other outputs
    return peer.details(t)


def _stamp_text(t: float) -> str:
    return stamp_text(header_msg(t))


def _same_header(a, b) -> bool:
    return (
        a.frame_id == b.frame_id
        and a.stamp.sec == b.stamp.sec
        and a.stamp.nanosec == b.stamp.nanosec
    )


def test_every_output_carries_the_image_header(start) -> None:
    from visualization_msgs.msg import Marker

    from attn6d_ros.ros.codec import pose_to_matrix

    node, peer = start(overlay=True, tf_prefix="obj/", **{"diagnostics.period_s": 0.2})
    t = time.time()
    peer.publish_frame(
        textured_image(),
        K_VGA,
        t,
        [("", "demo_object", pose(-0.05)), ("mug-7", "demo_object", pose(0.05))],
    )
    details = _wait_details(peer, node, t)
    assert peer.spin_until(
        lambda: (
            key_of(t) in peer.overlays
            and int(peer.diagnostic_values().get("processed frames", 0)) >= 1
        ),
        20,
    )

    image_header = image_msg(np.zeros((2, 2, 3), np.uint8), t).header
    assert _same_header(details.header, image_header)
    assert [r.instance_id for r in details.refinements] == ["demo_object", "mug-7"]
    assert all(r.error == "" and r.object_id == "demo_object" for r in details.refinements)
    assert details.latency_ms > 0 and details.compute_ms > 0
    (array,) = peer.outputs["refined/detections"][key_of(t)]
    assert _same_header(array.header, image_header)
    assert [d.id for d in array.detections] == ["", "mug-7"]
    assert all(_same_header(d.header, image_header) for d in array.detections)
    poses = peer.outputs["refined/pose"][key_of(t)]
    assert len(poses) == 2 and all(_same_header(p.header, image_header) for p in poses)
    (tf,) = [m for m in peer.tf if _same_header(m.transforms[0].header, image_header)]
    assert [x.child_frame_id for x in tf.transforms] == ["obj/demo_object", "obj/mug-7"]
    overlay = peer.overlays[key_of(t)]
    assert _same_header(overlay.header, image_header) and overlay.encoding == "rgb8"
    assert (overlay.width, overlay.height) == (640, 480)
    assert peer.spin_until(lambda: key_of(t) in peer.markers, 20)
    clear, *markers = peer.markers[key_of(t)].markers
    assert clear.action == Marker.DELETEALL
    assert all(_same_header(m.header, image_header) for m in [clear, *markers])
    by_ns = {ns: [m for m in markers if m.ns == ns] for ns in ("refined", "coarse", "labels")}
    assert [len(v) for v in by_ns.values()] == [2, 2, 2] and len(markers) == 6
    mesh_uri = (REPO / "models" / "demo_object.ply").resolve().as_uri()
    for refinement, refined, coarse, label in zip(
        details.refinements, *by_ns.values(), strict=True
    ):
        assert refined.type == coarse.type == Marker.MESH_RESOURCE
        assert refined.mesh_resource == coarse.mesh_resource == mesh_uri
        assert (
            refined.scale.x == refined.scale.y == refined.scale.z == 1.0
        )  # the table says metres
        assert np.allclose(
            pose_to_matrix(refined.pose), pose_to_matrix(refinement.refined_pose), atol=1e-9
        )
        assert np.allclose(
            pose_to_matrix(coarse.pose), pose_to_matrix(refinement.initial_pose), atol=1e-9
        )
        assert coarse.color.a < refined.color.a
        assert label.text.startswith(f"{refinement.instance_id} {refinement.score:.2f}")
    status = peer.diagnostics[-1].status[0]
    values = peer.diagnostic_values()
    assert status.name.startswith("/attn6d_refiner") and status.hardware_id == "cpu"
    assert values["device"] == "cpu" and int(values["processed frames"]) >= 1
    for key in (
        "input rate image (Hz)",
        "processed rate (Hz)",
        "dropped frames",
        "median latency (ms)",
    ):
        assert key in values


def test_bad_frames_are_reported_and_the_node_keeps_running(start) -> None:
    node, peer = start()
    rgb = textured_image()
    t0 = time.time()
    bad_encoding = image_msg(rgb, t0)
    bad_encoding.encoding = "yuv422"
    cases = [  # (stamp, image, camera_info, expected error)
        (t0, bad_encoding, None, "frame rejected: image.encoding 'yuv422' is not supported"),
        (
            t0 + 0.1,
            None,
            camera_info_msg(K_VGA, 1280, 720, t0 + 0.1),
            "frame rejected: image is 640x480 but camera_info.width x height is 1280x720",
        ),
        (
            t0 + 0.2,
            None,
            camera_info_msg(np.zeros((3, 3)), 640, 480, t0 + 0.2),
            "frame rejected: camera_info.k is all zeros",
        ),
    ]
    for (
        t,
        image,
        info,
        expected,
    ) in cases:  # one at a time: a newer frame would replace a waiting one
        peer.publish_frame(rgb, K_VGA, t, [("", "demo_object", pose())], image=image, info=info)
        details = _wait_details(peer, node, t)
        (refinement,) = details.refinements
        assert expected in refinement.error, refinement.error
        assert (
            key_of(t) not in peer.outputs["refined/detections"]
        )  # a rejected frame publishes details only

    # A 4K frame is refined like any other (the crop does not depend on the image size).
    t = t0 + 0.3
    big = np.tile(textured_image(640, 480), (5, 6, 1))[:2160, :3840]
    K_4k = np.array([[3000.0, 0.0, 1919.5], [0.0, 3000.0, 1079.5], [0.0, 0.0, 1.0]])
    peer.publish_frame(big, K_4k, t, [("", "demo_object", pose())])
    details = _wait_details(peer, node, t, timeout=120.0)
    assert details.refinements[0].error == ""
    assert len(peer.outputs["refined/detections"][key_of(t)][0].detections) == 1

    log = node.log()
    for _, _, _, expected in cases:
        assert expected.removeprefix("frame rejected: ") in log
    assert node.process.poll() is None


def test_bad_detections_are_reported_and_never_published(start) -> None:
    node, peer = start()
    t = time.time()
    nan, inf = float("nan"), float("inf")
    items = [
        ("", "demo_object", pose()),
        ("", "teapot", pose()),
        ("", "demo_object", ((0.0, 0.0, 0.6), (nan, 0.0, 0.0, 1.0))),
        ("", "demo_object", ((inf, 0.0, 0.6), (0.0, 0.0, 0.0, 1.0))),
        ("", "demo_object", ((0.0, 0.0, 0.6), (0.0, 0.0, 0.0, 0.0))),
        ("", "demo_object", pose(z=-0.6)),  # behind the camera
        ("", "demo_object", pose(x=6.0)),  # entirely outside the image
        ("dup", "demo_object", pose(-0.1)),
        ("dup", "demo_object", pose(0.1)),
    ]
    peer.publish_frame(textured_image(), K_VGA, t, items)
    details = _wait_details(peer, node, t)
    errors = [r.error for r in details.refinements]
    assert errors[0] == "" and errors[7] == "" and errors[8] == ""
    assert (
        "detections[1].results[0].hypothesis.class_id 'teapot' is not in the object table"
        in errors[1]
    )
    assert (
        "detections[2].results[0].pose.pose.orientation (x, y, z, w) has non-finite components: [nan"
        in errors[2]
    )
    assert (
        "detections[3].results[0].pose.pose.position has non-finite components: [inf" in errors[3]
    )
    assert "detections[4].results[0].pose.pose.orientation (x, y, z, w) has zero norm" in errors[4]
    assert errors[5].startswith(
        "detections[5] ('demo_object'): object is behind or inside the camera"
    )
    assert (
        errors[6].startswith("detections[6] ('demo_object'): crop window")
        and "entirely outside" in errors[6]
    )
    assert [r.instance_id for r in details.refinements][7:] == ["dup", "dup_1"]
    # Failed detections are left out; the three good ones are published, in input order.
    (array,) = peer.outputs["refined/detections"][key_of(t)]
    assert [d.id for d in array.detections] == ["", "dup", "dup"]
    assert len(peer.outputs["refined/pose"][key_of(t)]) == 3
    (tf,) = [m for m in peer.tf if m.transforms[0].header.stamp == details.header.stamp]
    assert [x.child_frame_id for x in tf.transforms] == ["demo_object", "dup", "dup_1"]

    # An empty detection array: empty outputs with the image's header, nothing refined.
    t2 = t + 0.1
    peer.publish_frame(textured_image(), K_VGA, t2, [])
    details = _wait_details(peer, node, t2)
    assert details.refinements == [] and details.header.frame_id == FRAME
    (array,) = peer.outputs["refined/detections"][key_of(t2)]
    assert array.detections == [] and array.header.frame_id == FRAME

    log = node.log()
    assert "'teapot' is not in the object table" in log and "duplicate ids ['dup']" in log
    assert node.process.poll() is None


def test_burst_of_200_frames_keeps_the_newest_and_counts_drops(start) -> None:
    node, peer = start(
        peer_depth=250,
        # All 200 frames reach the node and synchronize (a burst is a detector latency of up to 200 frames);
        # what is tested is the latest-only slot behind the synchronizer.
        **{
            "qos.image.depth": 250,
            "qos.detections.depth": 250,
            "sync.queue_size": 250,
            "diagnostics.period_s": 0.2,
        },
    )
    rgb = textured_image(160, 120)
    K = np.array([[125.0, 0.0, 79.5], [0.0, 125.0, 59.5], [0.0, 0.0, 1.0]])
    t0 = time.time()
    stamps = [
        t0 + 0.05 * i for i in range(200)
    ]  # 50 ms apart: more than sync.slop, no cross-matching
    for t in stamps:
        peer.publish_frame(rgb, K, t, [("", "demo_object", pose(z=2.0))])
    last = _wait_details(peer, node, stamps[-1], timeout=120.0)
    assert last.refinements[0].error == ""  # the newest frame is always refined

    def counters() -> dict:
        values = peer.diagnostic_values()
        return {
            k: int(values.get(k, -1))
            for k in ("synchronized frames", "processed frames", "dropped frames")
        }

    assert peer.spin_until(lambda: counters()["synchronized frames"] == 200, 30), counters()
    peer.spin_until(
        lambda: counters()["processed frames"] + counters()["dropped frames"] == 200, 10
    )
    c = counters()
    processed = len(peer.outputs["refined/details"])
    assert c["processed frames"] + c["dropped frames"] == 200, c
    assert c["dropped frames"] > 0 and c["processed frames"] == processed < 200, (c, processed)

    t = stamps[-1] + 1.0  # still serving afterwards
    peer.publish_frame(rgb, K, t, [("", "demo_object", pose(z=2.0))])
    assert _wait_details(peer, node, t).refinements[0].error == ""


def test_stamps_that_never_match_are_warned_about_naming_them(start) -> None:
    node, peer = start(**{"sync.warn_after_s": 1.0, "diagnostics.period_s": 0.2})
    rgb = textured_image(160, 120)
    K = np.array([[125.0, 0.0, 79.5], [0.0, 125.0, 59.5], [0.0, 0.0, 1.0]])
    t0 = time.time()
    end = time.monotonic() + 3.5
    i = 0
    while time.monotonic() < end:
        t = t0 + 0.1 * i
        peer.pub_image.publish(image_msg(rgb, t))
        peer.pub_info.publish(camera_info_msg(K, 160, 120, t))
        # Half a frame off (50 ms > sync.slop): these stamps never match an image.
        peer.pub_detections.publish(detections_msg(t + 0.05, [("", "demo_object", pose())]))
        peer.spin_until(lambda: False, 0.1)
        i += 1
    from diagnostic_msgs.msg import DiagnosticStatus

    warnings = [
        d.status[0] for d in peer.diagnostics if d.status[0].level == DiagnosticStatus.WARN
    ]
    assert warnings, "no WARN in /diagnostics while the inputs did not synchronize"
    message = warnings[-1].message
    assert (
        "no synchronized frame for" in message
        and "the detector must copy the image header's stamp" in message
    )
    log = node.log()
    assert "no synchronized frame for" in log
    # The warning names the stamps seen, image and detections alike, as sec.nanosec.
    warning = next(line for line in log.splitlines() if "no synchronized frame for" in line)
    named = re.findall(r"(image|detections) \[([^\]]*)\]", warning)
    assert [kind for kind, _ in named] == ["image", "detections"]
    for kind, text in named:
        offset = 0.0 if kind == "image" else 0.05
        published = {_stamp_text(t0 + 0.1 * j + offset) for j in range(i)}
        assert set(re.findall(r"'([0-9.]+)'", text)) <= published, (kind, text)
    assert not peer.outputs["refined/details"]


def _detect_then_track(peer: Peer, node, rgb, t: float, t2: float, items_t2: list | None) -> None:
    """Detects 'mug-1' at `t`, then checks that the frame at `t2` (`items_t2`: [] for an empty detection
    array, None for no detections message) is refined from the pose refined at `t` and published."""
    from attn6d_ros.ros.codec import pose_to_matrix

    peer.publish_frame(rgb, K_VGA, t, [("mug-1", "demo_object", pose())])
    first = _wait_details(peer, node, t).refinements[0]
    assert first.error == "" and not first.tracked
    peer.publish_frame(rgb, K_VGA, t2, items_t2)
    (tracked,) = _wait_details(peer, node, t2).refinements
    assert tracked.instance_id == "mug-1" and tracked.error == "" and tracked.tracked
    assert np.allclose(
        pose_to_matrix(tracked.initial_pose), pose_to_matrix(first.refined_pose), atol=1e-6
    )
    (array,) = peer.outputs["refined/detections"][key_of(t2)]
    assert [d.id for d in array.detections] == ["mug-1"]


def test_tracking_refines_from_the_last_poses_and_reset_clears_them(start) -> None:
    import rclpy
    from std_srvs.srv import Trigger

    node, peer = start(
        **{"tracking.enabled": True, "tracking.max_age_s": 2.0, "tracking.min_score": 0.0}
    )
    rgb = textured_image()
    t = time.time()
    t2 = t + 0.1  # an empty detection array: the last refined pose is the prior
    _detect_then_track(peer, node, rgb, t, t2, [])
    # tracking.wait_s is 0 (the default): an image whose detections never come is not tracked.
    peer.publish_frame(rgb, K_VGA, t2 + 0.05, None)
    peer.spin_until(lambda: False, 1.5)
    assert peer.details(t2 + 0.05) is None

    client = peer.node.create_client(Trigger, "/attn6d_refiner/reset_tracking")
    assert client.wait_for_service(timeout_sec=20.0)
    future = client.call_async(Trigger.Request())
    rclpy.spin_until_future_complete(peer.node, future, timeout_sec=20.0)
    assert future.result().success and future.result().message == "cleared 1 track(s)"

    t3 = t + 0.2
    peer.publish_frame(rgb, K_VGA, t3, [])
    assert _wait_details(peer, node, t3).refinements == []

    # Tracks expire by image stamp: a frame 5 s after the last detection (max age 2 s) has nothing to track.
    t4 = t + 0.3
    peer.publish_frame(rgb, K_VGA, t4, [("mug-1", "demo_object", pose())])
    _wait_details(peer, node, t4)
    t5 = t4 + 5.0
    peer.publish_frame(rgb, K_VGA, t5, [])
    assert _wait_details(peer, node, t5).refinements == []


def test_images_whose_detections_do_not_come_are_tracked_after_wait_s(start) -> None:
    node, peer = start(
        **{
            "tracking.enabled": True,
            "tracking.max_age_s": 5.0,
            "tracking.min_score": 0.0,
            "tracking.wait_s": 1.0,
            "diagnostics.period_s": 0.2,
        }
    )
    rgb = textured_image()
    t = time.time()
    # No tracks yet: an image alone publishes nothing.
    peer.publish_frame(rgb, K_VGA, t - 0.1, None)
    peer.spin_until(lambda: False, 1.5)
    assert peer.details(t - 0.1) is None

    t2 = t + 0.1  # the detector skips this image: refined from the last pose after wait_s
    _detect_then_track(peer, node, rgb, t, t2, None)
    image_header = image_msg(np.zeros((2, 2, 3), np.uint8), t2).header
    assert any(_same_header(m.transforms[0].header, image_header) for m in peer.tf)

    # Detections later than wait_s for an image already tracked: ignored (one output per image), named.
    peer.pub_detections.publish(detections_msg(t2, [("mug-1", "demo_object", pose())]))
    assert peer.spin_until(
        lambda: peer.diagnostic_values().get("late detections ignored") == "1", 20
    ), node.log()
    assert len(peer.outputs["refined/details"][key_of(t2)]) == 1
    assert "set tracking.wait_s above the detector's latency" in node.log()

    # Detections within wait_s win: the image is refined from them, once.
    t3 = t + 0.2
    peer.publish_frame(rgb, K_VGA, t3, [("mug-1", "demo_object", pose(0.02))])
    (from_detection,) = _wait_details(peer, node, t3).refinements
    assert not from_detection.tracked
    peer.spin_until(lambda: False, 1.5)
    assert len(peer.outputs["refined/details"][key_of(t3)]) == 1
    values = peer.diagnostic_values()
    assert values["tracked images without detections"] == "1"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"device": "gpu"},
            "parameter 'device' expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'",
        ),
        ({"sync.slop": 1}, "parameter 'sync.slop' must be a float, got 1 (int)"),
        (
            {"checkpoint": "/nonexistent/m.pt"},
            "parameter 'checkpoint': file not found: /nonexistent/m.pt",
        ),
    ],
)
def test_bad_start_up_parameters_exit_non_zero_naming_them(
    ros_domain: int, tmp_path: Path, checkpoint: Path, params: dict, expected: str
) -> None:
    node = NodeProcess(tmp_path, base_params(checkpoint, **params))
    code = node.wait_exit(timeout=60)
    log = node.log()
    node.stop()
    assert code == 1, log
    assert "cannot start: " + expected in log
