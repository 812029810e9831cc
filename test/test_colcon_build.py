"""The package builds with colcon in a workspace, as in a real ROS 2 install (sources, msgs, executable,
launch, config, models), and the installed copy imports and finds its share directory."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)

pytestmark = [pytest.mark.slow, pytest.mark.ros]


def test_colcon_build_and_installed_layout(tmp_path: Path) -> None:
    colcon = VENV / "bin" / "colcon"
    if not colcon.exists():
        pytest.fail("colcon is not installed (requirements/ros.txt)")
    source = tmp_path / "ws" / "src" / "attn6d_ros"
    source.mkdir(parents=True)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    for name in filter(None, files.stdout.decode().split("\0")):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes((REPO / name).read_bytes())
        (source / name).chmod((REPO / name).stat().st_mode)
    env = dict(
        os.environ, AMENT_PREFIX_PATH=str(VENV), PATH=f"{VENV / 'bin'}:{os.environ['PATH']}"
    )
    env.pop("PYTHONPATH", None)
    subprocess.run(
        [str(colcon), "build", "--packages-select", "attn6d_ros", "--event-handlers", "console_cohesion-",
         "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
        cwd=tmp_path / "ws", env=env, check=True, capture_output=True,
    )  # fmt: skip
    install = tmp_path / "ws" / "install" / "attn6d_ros"
    site = next(install.glob("lib/python3*/site-packages"))
    for path in (
        site / "attn6d_ros" / "refiner.py",
        site / "attn6d_ros" / "msg" / "_refinement_array.py",
        install / "lib" / "attn6d_ros" / "refine_node",
        install / "share" / "attn6d_ros" / "launch" / "refine.launch.py",
        install / "share" / "attn6d_ros" / "config" / "refine.yaml",
        install / "share" / "attn6d_ros" / "models" / "demo_object.ply",
        install / "share" / "ament_index" / "resource_index" / "packages" / "attn6d_ros",
    ):
        assert path.exists(), f"not installed: {path.relative_to(install)}"
    assert os.access(install / "lib" / "attn6d_ros" / "refine_node", os.X_OK)
    # What `source install/setup.bash` provides, minus the shell.
    run_env = dict(
        env,
        PYTHONPATH=str(site),
        LD_LIBRARY_PATH=f"{install / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}",
        AMENT_PREFIX_PATH=f"{install}:{VENV}",
    )
    code = (
        "import attn6d_ros, attn6d_ros.msg, attn6d_ros.refiner\n"
        "from attn6d_ros.paths import share_dir\n"
        "m = attn6d_ros.msg.RefinementArray()\n"
        "print(attn6d_ros.__version__, attn6d_ros.__file__, attn6d_ros.msg.__file__, share_dir())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=run_env, cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    version, init_file, msg_file, share = out.split()
    assert version == "0.1.0"  # our __init__.py, not rosidl's empty one
    assert init_file.startswith(str(site)) and msg_file.startswith(str(site))
    assert share == str(install / "share" / "attn6d_ros")
