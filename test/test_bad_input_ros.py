"""Bad input over the ROS interface (issue 30): one node process takes every case in turn.

The cases: the README's list of what is not published as refined (unknown class, NaN/inf/zero-norm
quaternion, behind the camera, outside the image, a bad frame, below min_score), malformed images (step,
data length, encodings, 0x0, a 4000x3000 frame), camera_info (K zeros or NaN, a size that does not match),
detections (empty results, zero quaternion, 1e9 m, unknown class, 500 in one frame, another frame_id than
the image's) and stamps going backwards (a bag played in a loop).

After each case: refined/details for the bad frame says what was wrong (or the frame is refined, for input
that is merely unusual), every field of every refined/details is set and finite, the next good frame is
refined and published, the node process is alive, and its log has no "internal error".
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from node_support import (
    FRAME,
    K_VGA,
    NodeProcess,
    Peer,
    base_params,
    camera_info_msg,
    detections_msg,
    image_msg,
    key_of,
    make_checkpoint,
    pose,
    textured_image,
)

from attn6d_ros.ros.codec import stamp_ns

pytestmark = [pytest.mark.ros, pytest.mark.slow]

GOOD = [("", "demo_object", pose())]
NAN, INF = float("nan"), float("inf")


@dataclass
class Frame:
    """The three messages of one bad case (None: the good one of that kind)."""

    image: object = None
    info: object = None
    detections: object = None


@dataclass
class Case:
    name: str
    make: Callable[[float], Frame]  # stamp -> the bad frame
    expected: str  # in every refinement's error; "" = refined (unusual, not bad)
    published: bool = False  # the bad frame's own refined/detections has objects


def _image(t: float, **fields) -> object:
    msg = image_msg(textured_image(), t)
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


def _info(t: float, K=K_VGA, width=640, height=480) -> object:
    return camera_info_msg(K, width, height, t)


def _detections(t: float, items=GOOD, frame=FRAME, edit=None) -> object:
    msg = detections_msg(t, items, frame=frame)
    if edit:
        edit(msg)
    return msg


def _big_frame(t: float) -> Frame:
    rgb = np.tile(textured_image(640, 480), (7, 7, 1))[:3000, :4000]
    K = np.array([[3200.0, 0.0, 1999.5], [0.0, 3200.0, 1499.5], [0.0, 0.0, 1.0]])
    return Frame(image_msg(rgb, t), _info(t, K, 4000, 3000), None)


def _many(t: float) -> Frame:
    items = [("", "demo_object", pose(x=0.001 * (i % 50) - 0.025, y=0.001 * (i // 50)))
             for i in range(500)]  # fmt: skip

    def scores(msg) -> None:
        for i, detection in enumerate(msg.detections):
            detection.results[0].hypothesis.score = i / 500.0

    return Frame(None, None, _detections(t, items, edit=scores))


def _no_results(msg) -> None:
    msg.detections[0].results = []


CASES = [
    # The README's list ("What is not published as refined").
    Case("unknown class", lambda t: Frame(detections=_detections(t, [("", "teapot", pose())])),
         "results[0].hypothesis.class_id 'teapot' is not in the object table"),
    Case("NaN quaternion", lambda t: Frame(detections=_detections(
        t, [("", "demo_object", ((0.0, 0.0, 0.6), (NAN, 0.0, 0.0, 1.0)))])),
        "orientation (x, y, z, w) has non-finite components"),
    Case("inf position", lambda t: Frame(detections=_detections(
        t, [("", "demo_object", ((INF, 0.0, 0.6), (0.0, 0.0, 0.0, 1.0)))])),
        "position has non-finite components"),
    Case("zero quaternion", lambda t: Frame(detections=_detections(
        t, [("", "demo_object", ((0.0, 0.0, 0.6), (0.0, 0.0, 0.0, 0.0)))])),
        "orientation (x, y, z, w) has zero norm"),
    Case("behind the camera", lambda t: Frame(detections=_detections(
        t, [("", "demo_object", pose(z=-0.6))])), "behind or inside the camera"),
    Case("outside the image", lambda t: Frame(detections=_detections(
        t, [("", "demo_object", pose(x=6.0))])), "entirely outside"),
    # Malformed images (every one rejects the frame: details only).
    Case("step too small", lambda t: Frame(image=_image(t, step=640 * 3 - 1)),
         "image.step 1919 is smaller than width x channels x bytes = 1920"),
    Case("data too short", lambda t: Frame(image=_image(t, data=bytes(640 * 3 * 479))),
         "image.data has 919680 bytes; step x height = 1920 x 480 = 921600 expected"),
    Case("encoding yuv422", lambda t: Frame(image=_image(t, encoding="yuv422")),
         "image.encoding 'yuv422' is not supported"),
    Case("encoding 32FC1", lambda t: Frame(image=_image(t, encoding="32FC1")),
         "image.encoding '32FC1' is not supported"),
    Case("encoding empty", lambda t: Frame(image=_image(t, encoding="")),
         "image.encoding '' is not supported"),
    Case("0x0 image", lambda t: Frame(image=_image(t, width=0, height=0, step=0, data=b"")),
         "image.width x image.height is 0x0; expected at least 2x2"),
    Case("4000x3000 image", _big_frame, "", published=True),
    # camera_info.
    Case("K all zeros", lambda t: Frame(info=_info(t, np.zeros((3, 3)))),
         "camera_info.k is all zeros"),
    Case("K with NaN", lambda t: Frame(info=_info(t, np.where(np.eye(3) > 0, NAN, K_VGA))),
         "camera_info.k has non-finite entries"),
    Case("size mismatch", lambda t: Frame(info=_info(t, K_VGA, 1280, 720)),
         "image is 640x480 but camera_info.width x height is 1280x720"),
    # Detections.
    Case("empty results", lambda t: Frame(detections=_detections(t, edit=_no_results)),
         "detections[0].results is empty: no class id and no pose"),
    Case("1e9 m away", lambda t: Frame(detections=_detections(
        t, [("", "demo_object", ((0.0, 0.0, 1e9), (0.0, 0.0, 0.0, 1.0)))])),
        "position.z is 1e+09 m, beyond the 20 m the renderer draws"),
    Case("1e9 m sideways", lambda t: Frame(detections=_detections(
        t, [("", "demo_object", ((1e9, 0.0, 0.6), (0.0, 0.0, 0.0, 1.0)))])), "entirely outside"),
    Case("500 in one frame", _many, "", published=True),
    Case("frame_id of another frame", lambda t: Frame(detections=_detections(t, frame="base_link")),
         "detections.header.frame_id 'base_link' differs from image.header.frame_id"),
]  # fmt: skip


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory):
    """One node process (1 stage, tiny checkpoint) and a peer in this process, in a domain of their own."""
    import os

    import rclpy
    from conftest import _domain_ids

    tmp = tmp_path_factory.mktemp("bad_input")
    previous = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = str(next(_domain_ids) % 100 + 1)
    node = NodeProcess(tmp, base_params(make_checkpoint(tmp / "m.pt")))
    rclpy.init()
    try:
        node.wait_ready()
        peer = Peer()
        assert peer.wait_for_node(), node.log()
        yield node, peer
    finally:
        rclpy.shutdown()
        node.stop()
        if previous is None:
            os.environ.pop("ROS_DOMAIN_ID")
        else:
            os.environ["ROS_DOMAIN_ID"] = previous


_clock = [time.time()]


def _stamp() -> float:
    _clock[0] += 1.0  # one second apart: never within the synchronizer's slop
    return _clock[0]


def _send(peer: Peer, t: float, frame: Frame) -> None:
    peer.pub_image.publish(frame.image or image_msg(textured_image(), t))
    peer.pub_info.publish(frame.info or _info(t))
    peer.pub_detections.publish(frame.detections or _detections(t))


def _wait(peer: Peer, node: NodeProcess, t: float, timeout: float = 60.0):
    assert peer.spin_until(lambda: peer.details(t) is not None, timeout), (
        f"no refined/details for {t}:\n{node.log()[-3000:]}"
    )
    peer.spin_until(lambda: False, 0.3)  # the frame's other outputs
    return peer.details(t)


def _assert_complete(details, t: float) -> None:
    """Every field of refined/details is set: the image's header, finite poses with unit quaternions."""
    assert details.header.frame_id == FRAME and key_of(t) == stamp_ns(details.header)
    assert math.isfinite(details.latency_ms) and math.isfinite(details.compute_ms)
    for refinement in details.refinements:
        poses = [refinement.initial_pose, refinement.refined_pose, *refinement.stage_poses]
        if "non-finite" in refinement.error or "zero norm" in refinement.error:
            # Not refined: initial and refined pose are the coarse pose as received, NaN and all.
            assert not refinement.stage_poses
            poses = []
        for p in poses:
            values = [p.position.x, p.position.y, p.position.z, p.orientation.x,
                      p.orientation.y, p.orientation.z, p.orientation.w]  # fmt: skip
            assert all(math.isfinite(v) for v in values), (refinement.error, values)
            assert abs(np.linalg.norm(values[3:]) - 1.0) < 1e-6, values
        assert math.isfinite(refinement.score) and 0.0 <= refinement.score <= 1.0
        assert refinement.instance_id


def _good_frame_is_refined(peer: Peer, node: NodeProcess) -> None:
    t = _stamp()
    _send(peer, t, Frame())
    details = _wait(peer, node, t)
    assert [r.error for r in details.refinements] == [""], details.refinements
    _assert_complete(details, t)
    assert len(peer.outputs["refined/detections"][key_of(t)][0].detections) == 1
    assert node.process.poll() is None, node.log()[-3000:]
    assert "internal error" not in node.log()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_reported_and_the_next_good_frame_refined(graph, case: Case) -> None:
    node, peer = graph
    t = _stamp()
    _send(peer, t, case.make(t))
    details = _wait(peer, node, t, timeout=120.0)
    _assert_complete(details, t)
    assert details.refinements, "every detection is reported"
    for refinement in details.refinements:
        assert case.expected in refinement.error, refinement.error
        assert bool(refinement.error) == bool(case.expected)
    objects = peer.outputs["refined/detections"].get(key_of(t), [])
    assert bool(objects and objects[0].detections) == case.published
    if case.name == "500 in one frame":  # max_detections (32): the highest-scored
        assert len(details.refinements) == 32
        assert "the 468 lowest-scored were dropped" in node.log()
    _good_frame_is_refined(peer, node)


def test_below_min_score_is_reported_not_published(graph) -> None:
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    node, peer = graph
    client = AsyncParameterClient(peer.node, "/attn6d_refiner")
    assert client.wait_for_services(timeout_sec=30.0)

    def set_min_score(value: float) -> None:
        future = client.set_parameters([Parameter("min_score", value=value)])
        assert peer.spin_until(future.done, 30.0) and future.result().results[0].successful

    set_min_score(1.0)
    try:
        t = _stamp()
        _send(peer, t, Frame())
        details = _wait(peer, node, t)
        _assert_complete(details, t)
        assert "is below min_score 1.0: not published as refined" in details.refinements[0].error
        assert not peer.outputs["refined/detections"][key_of(t)][0].detections
    finally:
        set_min_score(0.0)
    _good_frame_is_refined(peer, node)


def test_stamps_going_backwards_are_refined_like_any_other(graph) -> None:
    # A bag played in a loop: after its last frame the stamps jump back to its first.
    node, peer = graph
    _good_frame_is_refined(peer, node)
    start = _clock[0]
    for t in (start - 30.5, start - 29.5, start - 28.5):  # half seconds: stamps not used before
        _send(peer, t, Frame())
        details = _wait(peer, node, t)
        assert [r.error for r in details.refinements] == [""]
        _assert_complete(details, t)
    _good_frame_is_refined(peer, node)
