"""The core never imports rclpy, and `pip install .` gives a working library without any ROS."""

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from conftest import REPO

ROS_PACKAGES = (
    "rclpy",
    "rosidl_runtime_py",
    "message_filters",
    "tf2_ros",
    "cv_bridge",
    "launch",
    "launch_ros",
)
# The ROS shell (node.py and ros/) and the developer tools (tools/): the only modules that may import ROS
# packages when they are importable. Every other module of attn6d_ros, found on disk (so a new module is
# checked without being listed), is core and must not.
ROS_SHELL = {"node", "ros", "tools"}


def _core_modules() -> list[str]:
    package = REPO / "attn6d_ros"
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts and parts[0] not in ROS_SHELL:
            names.append(".".join(parts))
    return names


def _assert_no_ros_imported(
    modules: list[str] | tuple[str, ...], packages: tuple[str, ...]
) -> None:
    """Imports attn6d_ros.<m> for each of `modules` in a fresh interpreter; none of `packages` may load."""
    code = (
        "import sys\n"
        + "".join(f"import attn6d_ros.{m}\n" for m in modules)
        + f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {packages!r})\n"
        + "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_core_modules_do_not_import_ros() -> None:
    core = _core_modules()
    assert {"refiner", "network", "align.solver", "render", "train", "pose_check"} <= set(core)
    _assert_no_ros_imported(core, ROS_PACKAGES)


# The ROS layer's plain-Python helpers (README's module map says "ROS-free"): the bag tool and the tests use
# them without a ROS graph.
ROS_FREE_HELPERS = ("ros.frame_jobs", "ros.refiner_setup", "ros.tracking", "ros.input_watch", "ros.params",
                    "ros.params_file", "ros.throttled_log", "ros.backpressure", "ros.codec",
                    "ros.overlay")  # fmt: skip


def test_ros_free_helpers_do_not_import_ros() -> None:
    _assert_no_ros_imported(ROS_FREE_HELPERS, (*ROS_PACKAGES, "sensor_msgs"))


@pytest.mark.slow
def test_pip_install_into_a_plain_venv(tmp_path: Path) -> None:
    # Torch first, pinned to the local CPU wheel (`pip install .` would otherwise fetch a CUDA build).
    venv.create(tmp_path / "v", with_pip=True)
    python = str(tmp_path / "v" / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH")}
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "torch==2.13.0"], check=True, env=env)
    subprocess.run([*pip, str(REPO)], check=True, env=env, cwd=tmp_path)
    code = (
        "import sys, attn6d_ros\n"
        "from attn6d_ros.refiner import Refiner\n"
        "from attn6d_ros.mesh import load_mesh\n"
        "from attn6d_ros.paths import share_dir\n"
        "assert 'rclpy' not in sys.modules\n"
        "assert (share_dir() / 'models' / 'demo_object.ply').is_file(), share_dir()\n"
        "print(attn6d_ros.__version__, attn6d_ros.__file__)\n"
    )
    out = subprocess.run([python, "-c", code], check=True, env=env, cwd=tmp_path,
                         capture_output=True, text=True)  # fmt: skip
    assert str(tmp_path / "v") in out.stdout  # the installed copy, not the checkout
