"""Clean shutdown of the node process (issue 30): two SIGINTs (a terminal's Ctrl-C under launch), SIGTERM then
SIGINT, and SIGINT to the process group of the launch script: exit code 0, no traceback, worker stopped.

The node is kept busy with a slow frame (32 stages and the alignment with extra starts on twenty objects:
about 6 s on one CPU thread) so that the second signal arrives while the clean-up waits for the worker,
where it used to raise KeyboardInterrupt.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from node_support import (
    K_VGA,
    REPO,
    NodeProcess,
    Peer,
    base_params,
    pose,
    textured_image,
)

pytestmark = [pytest.mark.ros, pytest.mark.slow]

SLOW_FRAME = {"stages": 32, "align": True, "align_turn_deg": 10.0}
SLOW_OBJECTS = 20


@pytest.fixture
def peer(ros_domain: int):
    import rclpy

    rclpy.init()
    made: list[Peer] = []

    def _make() -> Peer:
        made.append(Peer())
        return made[-1]

    yield _make
    rclpy.shutdown()


def _busy(peer: Peer, log) -> None:
    """Sends a slow frame and waits until the node is refining it."""
    assert peer.wait_for_node(), f"no discovery:\n{log()}"
    items = [("", "demo_object", pose(x=0.01 * i - 0.1)) for i in range(SLOW_OBJECTS)]
    peer.publish_frame(textured_image(), K_VGA, time.time(), items)
    peer.spin_until(lambda: False, 1.5)


def _assert_clean(log: str) -> None:
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
    assert "internal error" not in log, log


@pytest.mark.parametrize(
    "signals", [(signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGINT)]
)
def test_a_second_signal_during_the_clean_up_still_exits_0(
    peer, checkpoint: Path, tmp_path: Path, signals: tuple
) -> None:
    node = NodeProcess(tmp_path, base_params(checkpoint, **SLOW_FRAME))
    try:
        node.wait_ready()
        _busy(peer(), node.log)
        first, second = signals
        node.process.send_signal(first)
        time.sleep(0.3)
        assert node.process.poll() is None  # still cleaning up: the refinement in progress
        node.process.send_signal(second)
        assert node.wait_exit(timeout=60) == 0, node.log()
    finally:
        node.stop()
    log = node.log()
    _assert_clean(log)
    assert f"{signal.Signals(second).name} received again: still shutting down" in log


def test_sigint_to_the_launch_scripts_process_group_exits_0(
    peer, checkpoint: Path, tmp_path: Path
) -> None:
    # As Ctrl-C in a terminal: SIGINT to the whole group, so the node gets the terminal's and the
    # launcher's (it forwards what it gets).
    params = tmp_path / "params.yaml"
    lines = [f"    {k}: {v!r}" if isinstance(v, str) else f"    {k}: {str(v).lower()}"
             for k, v in base_params(checkpoint, **SLOW_FRAME).items()]  # fmt: skip
    params.write_text("/**:\n  ros__parameters:\n" + "\n".join(lines) + "\n")
    log_path = tmp_path / "launch.log"
    with open(log_path, "w") as log_file:
        launcher = subprocess.Popen(
            [sys.executable, str(REPO / "launch" / "refine.launch.py"), f"params_file:={params}",
             f"dds_profile:={REPO / 'config' / 'fastdds_large_frames_loopback.xml'}"],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0"),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while "ready:" not in log_path.read_text():
                assert launcher.poll() is None and time.monotonic() < deadline, (
                    log_path.read_text()
                )
                time.sleep(0.2)
            _busy(peer(), log_path.read_text)
            os.killpg(launcher.pid, signal.SIGINT)
            code = launcher.wait(timeout=60)
        finally:
            if launcher.poll() is None:
                os.killpg(launcher.pid, signal.SIGKILL)
                launcher.wait()
    log = log_path.read_text()
    assert code == 0, log
    _assert_clean(log)
