"""The node's /diagnostics status from its counters (no ROS graph needed)."""

import pytest

pytestmark = pytest.mark.ros


def _status(stats, **overrides):
    from attn6d_ros.ros.diagnostics import diagnostic_status

    kwargs = dict(
        name="/attn6d_refiner: pose refinement",
        device="cpu",
        worker_alive=True,
        sync_problem="",
        dropped=3,
        tracks=2,
    )
    return diagnostic_status(stats, **(kwargs | overrides))


def test_levels_say_what_is_wrong_first() -> None:
    from diagnostic_msgs.msg import DiagnosticStatus

    from attn6d_ros.ros.diagnostics import NodeStats

    stats = NodeStats()
    assert (_status(stats).level, _status(stats).message) == (DiagnosticStatus.OK, "ok")
    stats.add("internal_errors")
    assert _status(stats).level == DiagnosticStatus.WARN
    assert "1 frame(s) failed with an internal error" in _status(stats).message
    assert _status(stats, sync_problem="no synchronized frame").message == "no synchronized frame"
    stopped = _status(stats, worker_alive=False, sync_problem="x")
    assert (stopped.level, stopped.message) == (DiagnosticStatus.ERROR, "inference worker stopped")


def test_values_report_counts_rates_and_medians() -> None:
    import time

    from attn6d_ros.ros.diagnostics import RATE_WINDOW_S, NodeStats

    stats = NodeStats()
    now = time.monotonic()
    for _ in range(10):
        stats.arrived("image", now)
    stats.arrived("image", now - 2 * RATE_WINDOW_S)  # outside the window
    stats.add("tracked_images", 4)
    for latency, compute in ((10.0, 5.0), (30.0, 0.0), (20.0, 7.0)):
        stats.frame_done(latency, compute)
    values = {kv.key: kv.value for kv in _status(stats).values}
    assert values["input rate image (Hz)"] == f"{10 / RATE_WINDOW_S:.2f}"
    assert values["tracked images without detections"] == "4"
    assert values["median latency (ms)"] == "20.0" and values["median compute (ms)"] == "6.0"
    assert (values["dropped frames"], values["tracks"], values["device"]) == ("3", "2", "cpu")


def test_camera_info_without_images_is_a_warning_pointing_at_the_dds_profile() -> None:
    # Issue 30: best-effort VGA images from another process were lost in Fast DDS's 512 KiB
    # shared-memory segments while the small camera_info kept arriving; nothing said why.
    import time

    from diagnostic_msgs.msg import DiagnosticStatus

    from attn6d_ros.ros.diagnostics import NodeStats, missing_images

    now = time.monotonic()
    stats = NodeStats()
    for i in range(50):  # 10 Hz camera_info, no image
        stats.arrived("camera_info", now - i * 0.1)
    problem = missing_images(stats, now, "/share/config/fastdds_large_frames.xml")
    assert "camera_info arrives (10.0 Hz) but images do not (0.0 Hz)" in problem
    assert "FASTDDS_DEFAULT_PROFILES_FILE" in problem
    assert "/share/config/fastdds_large_frames.xml" in problem
    status = _status(stats, image_problem=problem, sync_problem="not this one")
    assert (status.level, status.message) == (DiagnosticStatus.WARN, problem)
    values = {kv.key: kv.value for kv in status.values}
    assert (values["received camera_infos"], values["received images"]) == ("50", "0")

    for i in range(10):  # 2 Hz of images against 10 Hz of camera_info: most are lost
        stats.arrived("image", now - i * 0.5)
    assert "images do not (2.0 Hz)" in missing_images(stats, now, "p.xml")
    for i in range(40):  # now every camera_info has its image
        stats.arrived("image", now - i * 0.1 - 0.05)
    assert missing_images(stats, now, "p.xml") == ""
    assert (
        missing_images(NodeStats(), now, "p.xml") == ""
    )  # nothing arrives at all: not this problem
