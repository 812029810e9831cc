"""Camera-sized images with the default best-effort image QoS between two processes (issue 30 item 5).

Fast DDS's default shared-memory segment (512 KiB) is smaller than one 640x480 rgb8 frame; a best-effort
stream from another process then arrived partly or not at all (0-18 of 40). With the package's profile
(config/fastdds_large_frames*.xml) in the camera process and in the node (through the launch script, as
users start it), every frame arrives. The node's own count (/diagnostics "received images") is the measure.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from node_support import REPO, base_params

pytestmark = [pytest.mark.ros, pytest.mark.slow]

LOOPBACK_PROFILE = REPO / "config" / "fastdds_large_frames_loopback.xml"
FRAMES = 40


def _params_file(path: Path, params: dict) -> Path:
    lines = [f"    {k}: {v!r}" if isinstance(v, str) else f"    {k}: {str(v).lower()}"
             for k, v in params.items()]  # fmt: skip
    path.write_text("/**:\n  ros__parameters:\n" + "\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(("width", "height"), [(640, 480), (1280, 720)])
def test_every_frame_arrives_with_the_default_best_effort_qos(
    ros_domain: int, checkpoint: Path, tmp_path: Path, width: int, height: int
) -> None:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray

    params = base_params(checkpoint)
    del params["qos.image.reliability"], params["qos.image.depth"]  # the defaults: best_effort, 5
    env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0")
    log_path = tmp_path / "node.log"
    with open(log_path, "w") as log:
        node = subprocess.Popen(
            [sys.executable, str(REPO / "launch" / "refine.launch.py"),
             f"params_file:={_params_file(tmp_path / 'params.yaml', params)}",
             f"dds_profile:={LOOPBACK_PROFILE}"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    camera = None
    rclpy.init()
    try:
        deadline = time.monotonic() + 120
        while "ready:" not in log_path.read_text():
            assert node.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        assert f"Fast DDS profile {LOOPBACK_PROFILE}" in log_path.read_text()
        assert "image QoS best_effort depth 5" in log_path.read_text()
        camera_env = dict(env, FASTDDS_DEFAULT_PROFILES_FILE=str(LOOPBACK_PROFILE),
                          FASTRTPS_DEFAULT_PROFILES_FILE=str(LOOPBACK_PROFILE))  # fmt: skip
        camera = subprocess.run(
            [sys.executable, str(REPO / "test" / "camera_peer.py"), str(width), str(height),
             str(FRAMES), "10"],
            env=camera_env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert camera.returncode == 0, camera.stdout + camera.stderr
        probe = rclpy.create_node("large_images_probe")
        received: list[str] = []

        def record(msg: DiagnosticArray) -> None:
            values = {kv.key: kv.value for kv in msg.status[0].values}
            received.append(values["received images"])

        probe.create_subscription(DiagnosticArray, "/diagnostics", record, 10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not received or received[-1] != str(FRAMES)):
            rclpy.spin_once(probe, timeout_sec=0.1)
        assert received and received[-1] == str(FRAMES), (received[-3:], log_path.read_text())
        assert "but images do not" not in log_path.read_text()
    finally:
        rclpy.shutdown()
        node.send_signal(2)
        node.wait(timeout=30)
