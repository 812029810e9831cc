"""attn6d_ros built with colcon into a workspace install space, as in a user's ROS 2 workspace, and the
environment that `source install/local_setup.bash` gives (for `ros2 launch` and the installed node)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

VENV = Path(sys.prefix)


def build_workspace(workspace: Path) -> Path:
    """Copies the tracked files of this checkout to `workspace`/src/attn6d_ros, runs `colcon build` there
    against the venv's ROS 2 and returns the package's install prefix (`workspace`/install/attn6d_ros).

    Raises:
        AssertionError: colcon is missing or the build fails (with colcon's output).
    """
    colcon = VENV / "bin" / "colcon"
    assert colcon.exists(), "colcon is not installed (requirements/ros-common.txt)"
    source = workspace / "src" / "attn6d_ros"
    source.mkdir(parents=True)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    for name in filter(None, files.stdout.decode().split("\0")):
        if not (REPO / name).is_file():  # deleted in the work tree, not yet in the index
            continue
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes((REPO / name).read_bytes())
        (source / name).chmod((REPO / name).stat().st_mode)
    env = dict(build_environment())
    result = subprocess.run(
        [str(colcon), "build", "--packages-select", "attn6d_ros", "--event-handlers", "console_cohesion-",
         "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
        cwd=workspace, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, f"colcon build failed:\n{result.stdout}\n{result.stderr}"
    return workspace / "install" / "attn6d_ros"


def build_environment() -> dict[str, str]:
    """This process's environment with the venv as the ament prefix (what a sourced ROS 2 gives colcon)."""
    env = dict(
        os.environ, AMENT_PREFIX_PATH=str(VENV), PATH=f"{VENV / 'bin'}:{os.environ['PATH']}"
    )
    env.pop("PYTHONPATH", None)
    return env


def sourced_environment(install: Path) -> dict[str, str]:
    """The environment after `source <workspace>/install/local_setup.bash`, read from a bash that did it."""
    script = f"source {install.parent / 'local_setup.bash'} && env -0"
    out = subprocess.run(
        ["bash", "-c", script], env=build_environment(), capture_output=True, check=True
    ).stdout
    return dict(line.split("=", 1) for line in out.decode().split("\0") if "=" in line)
