"""The node's /diagnostics status from its counters (no ROS graph needed)."""

import pytest

pytestmark = pytest.mark.ros


def _status(stats, **overrides):
    from attn6d_ros.diagnostics import diagnostic_status

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

    from attn6d_ros.diagnostics import NodeStats

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

    from attn6d_ros.diagnostics import RATE_WINDOW_S, NodeStats

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
